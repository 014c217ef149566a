"""Many processes, one journal: identical jobs started at the same instant, under CPU load.

Each round starts, against one loopback FakeFal, ``runs`` CLI ``run`` processes, one ``batch`` process
whose manifest holds the same job, and one process calling ``LipSyncClient.run`` as the web page's runner
does, all released at the same instant on a brand-new journal (``fresh=True``) or on one that already
holds other jobs. Every process must succeed with the same job, and the fake must have made exactly one
provider job per round. ``load`` busy loops run beside it the whole time.

The suite runs a few rounds (tests/test_journal_open.py); the full acceptance run is
``python -m tests.journal_stress --rounds 50``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from latentsync_routes.testing import FakeFal
from tests.cli_helpers import clean_env
from tests.mediafactory import make_video, make_wav

FAL_KEY = "stress-key"

#: Imports the package first, then waits for the shared start instant, so the processes meet the journal
#: together instead of one interpreter start-up apart.
_LAUNCH = """
import sys, time
from latentsync_routes.cli import main
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
sys.argv = ["latentsync-routes", *sys.argv[2:]]
main()
"""

_PAGE_RUNNER = """
import json, sys, time
from latentsync_routes import LipSyncClient
start = float(sys.argv[1])
client = LipSyncClient(route="fal", consent="stress test")
while time.time() < start:
    time.sleep(0.001)
result = client.run(sys.argv[2], sys.argv[3], output=sys.argv[4])
print(json.dumps({"job_id": result.job_id, "provider_request_id": result.provider_request_id}))
"""


@dataclass
class Round:
    """What one round saw: each process's exit code and job, and the provider jobs the fake made."""

    codes: list[int]
    job_ids: set[str]
    provider_jobs: int
    locked_messages: int
    outputs: list[str]

    @property
    def ok(self) -> bool:
        return (
            set(self.codes) == {0} and len(self.job_ids) == 1 and self.provider_jobs == 1 and not self.locked_messages
        )


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


@contextmanager
def cpu_load(loops: int, seconds: float) -> Iterator[None]:
    """``loops`` busy processes beside the work, each ending by itself after ``seconds`` at most."""
    stop_at = time.time() + seconds
    workers = [
        multiprocessing.get_context("spawn").Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(loops)
    ]
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.terminate()
            worker.join(5)


def _job_id(stdout: str) -> str | None:
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    if "jobs" in doc:  # a batch report: its one row
        rows = doc["jobs"]
        return str(rows[0].get("job_id")) if len(rows) == 1 else None
    return str(doc.get("job_id"))


def run_round(folder: Path, *, runs: int = 4, fresh: bool = True, home: Path | None = None) -> Round:
    """One round in ``folder``: ``runs`` CLI runs, a batch and a page-style API run of the same job."""
    # absolute: the batch reads a manifest's relative paths against the manifest's own folder
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    video, audio = make_video(folder / "clip.mp4", 1.0), make_wav(folder / "voice.wav", 1.0)
    home = home or folder / "home"
    out = folder / "out.mp4"
    manifest = folder / "m.csv"
    manifest.write_text(f"video,audio,output,consent\n{video},{audio},{out},stress test\n")
    with FakeFal(expected_key=FAL_KEY, queue_polls=1, progress_polls=1) as fake:
        env = clean_env(
            home,
            {
                "LATENTSYNC_ROUTES_FAL_BASE_URL": fake.url,
                "FAL_KEY": FAL_KEY,
                "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05",
                "LATENTSYNC_ROUTES_ROUTE": "fal",
            },
        )
        if not fresh:  # an old journal: other jobs already in it
            other = folder / "other.mp4"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _LAUNCH,
                    "0",
                    "run",
                    str(video),
                    str(audio),
                    "-o",
                    str(other),
                    "--consent",
                    "stress test",
                ],
                env=env,
                capture_output=True,
                timeout=300,
                check=True,
            )
        start = time.time() + 4.0
        run_args = ["run", str(video), str(audio), "-o", str(out), "--consent", "stress test", "--json"]
        commands = [[sys.executable, "-c", _LAUNCH, str(start), *run_args] for _ in range(runs)]
        commands.append([sys.executable, "-c", _LAUNCH, str(start), "batch", str(manifest), "--json"])
        commands.append([sys.executable, "-c", _PAGE_RUNNER, str(start), str(video), str(audio), str(out)])
        procs = [
            subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
        provider_jobs = len(fake.jobs) - (0 if fresh else 1)
    return Round(
        codes=[p.returncode for p in procs],
        job_ids={j for j in (_job_id(stdout) for stdout, _ in outputs) if j},
        provider_jobs=provider_jobs,
        locked_messages=sum("database is locked" in stdout + stderr for stdout, stderr in outputs),
        outputs=[
            f"exit {p.returncode}: {stderr.strip()[-400:]}"
            for p, (_, stderr) in zip(procs, outputs, strict=True)
            if p.returncode
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument(
        "--runs", type=int, default=4, help="identical CLI runs per round (plus a batch and an API run)"
    )
    parser.add_argument("--load", type=int, default=2, help="busy loops beside the work")
    parser.add_argument("--old", action="store_true", help="journals that already hold a job")
    parser.add_argument("--folder", type=Path, default=Path(".bench/journal-stress"))
    args = parser.parse_args(argv)
    failed = 0
    with cpu_load(args.load, seconds=3600):
        for n in range(args.rounds):
            seen = run_round(args.folder / f"round-{n:03d}", runs=args.runs, fresh=not args.old)
            failed += not seen.ok
            print(
                f"round {n + 1}/{args.rounds}: exits {seen.codes}, jobs {len(seen.job_ids)}, provider jobs "
                f"{seen.provider_jobs}, 'database is locked' {seen.locked_messages}"
                f"{'' if seen.ok else '  FAILED ' + ' | '.join(seen.outputs)}",
                flush=True,
            )
    print(f"{args.rounds - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
