"""Benchmarks of many jobs at once: hosted jobs through the thread executor, local jobs over Ray actors.

1. **Hosted batch**: N jobs (default 1,000) at concurrency C (default 20) through the batch executor seam
   (``ThreadExecutor``, each job a full ``LipSyncClient.run``: probe, policy, journal claim, upload, submit,
   polls, download, record) against FakeFal in a child process. Printed: the makespan against the ideal
   (``ceil(N / C)`` times one job's wall time measured alone, i.e. perfect overlap and zero per-job cost on
   the driver), jobs/s, provider jobs created (must be N), and the peak growth of this process's RSS.
2. **Local batch on Ray**: M local jobs on tiny random-weight models (64 px face crop, CPU) over one Ray
   actor, then over two; printed: each throughput and the ratio (two actors / one). Each actor gets one
   CPU and one torch thread, the CPU stand-in for one GPU per actor.

    python benchmarks/bench_batch.py                       # both, default sizes
    python benchmarks/bench_batch.py --jobs 200 --concurrency 20 --local-jobs 4 --skip-local
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_hosted import FAL_KEY, PeakRSS, fake, make_media, set_env  # noqa: E402


class Quiet:
    """BatchEvents that only count."""

    def __init__(self) -> None:
        self.done = 0

    def started(self, item: Any) -> None:
        pass

    def progress(self, item: Any, message: str, fraction: float | None) -> None:
        pass

    def finished(self, item: Any, outcome: Any) -> None:
        self.done += 1


def items_for(count: int, video: Path, audio: Path, out: Path, route: str, **options: Any) -> list[Any]:
    from latentsync_routes.batch.executor import BatchItem

    return [BatchItem(index=k, line=k + 2, video=str(video), audio=str(audio), output=out / f"{route}-{k}.mp4",
                      route=route, options={"seed": k, **options}) for k in range(count)]  # fmt: skip


# ------------------------------------------------------------------------------------------ 1. hosted
def bench_hosted(jobs: int, concurrency: int, queue_polls: int, poll_s: float) -> dict[str, Any]:
    from latentsync_routes import LipSyncClient
    from latentsync_routes.batch.executor import StopSignal, ThreadExecutor
    from latentsync_routes.types import LipSyncResult

    with tempfile.TemporaryDirectory() as tmp, fake("fal", queue_polls=queue_polls, progress_polls=1) as ask:
        root = Path(tmp)
        set_env(root / "home", LATENTSYNC_ROUTES_FAL_BASE_URL=ask("url"), LATENTSYNC_ROUTES_POLL_INTERVAL=str(poll_s))
        video, audio = make_media(root)
        client = LipSyncClient(credentials={"fal": FAL_KEY}, consent="bench")
        # one job's wall time alone (median of 5), after a warm-up job
        alone = []
        for k, one in enumerate(items_for(6, video, audio, root / "alone", "fal")):
            (root / "alone").mkdir(exist_ok=True)
            started = time.perf_counter()
            client.run(one.video, one.audio, one.output, route="fal", seed=10_000 + k)
            if k:
                alone.append(time.perf_counter() - started)
        single = sorted(alone)[len(alone) // 2]
        ask("clear")
        created_before = ask("stats")["jobs"]
        (root / "batch").mkdir()
        batch = items_for(jobs, video, audio, root / "batch", "fal")
        events = Quiet()
        peak = PeakRSS()
        started = time.perf_counter()
        outcomes = ThreadExecutor().run(client, batch, limits={"fal": concurrency}, events=events, stop=StopSignal())
        makespan = time.perf_counter() - started
        grew = peak.stop()
        ok = sum(isinstance(o, LipSyncResult) for o in outcomes.values())
        created = ask("stats")["jobs"] - created_before
    ideal = math.ceil(jobs / concurrency) * single
    return {"jobs": jobs, "concurrency": concurrency, "ok": ok, "provider_jobs_created": created,
            "one_job_alone_s": round(single, 3), "makespan_s": round(makespan, 2), "ideal_s": round(ideal, 2),
            "makespan_over_ideal": round(makespan / ideal, 2), "jobs_per_s": round(jobs / makespan, 1),
            "peak_rss_growth_mb": round(grew / 2**20, 1)}  # fmt: skip


# ------------------------------------------------------------------------------------------ 2. local on Ray
def tiny_setup() -> None:
    """Run in each actor (pickled by value from this script): tiny 64 px models, one torch thread."""
    import torch

    from latentsync_routes.local import runtime
    from latentsync_routes.testing.tiny_local import tiny_mask, tiny_models

    torch.set_num_threads(1)
    models = tiny_models("1.5", model_version="tiny bench models")
    models.mask = tiny_mask(64)
    runtime.register_models(models)


def bench_local(jobs: int, cpus: int, audio_s: float) -> dict[str, Any]:
    import ray

    from latentsync_routes import LipSyncClient
    from latentsync_routes.batch.executor import StopSignal
    from latentsync_routes.batch.ray_executor import RayExecutor
    from latentsync_routes.types import LipSyncResult
    from tests.local_fixtures import astronaut_frames, write_h264
    from tests.mediafactory import make_wav

    logging.getLogger("latentsync_routes").setLevel(logging.ERROR)  # not the CPU warning of every job
    root_path = str(Path(__file__).resolve().parents[1])
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [root_path, os.environ.get("PYTHONPATH")]))}
        },
    )
    figures: dict[str, Any] = {"jobs": jobs, "audio_s": audio_s}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            set_env(root / "home", LATENTSYNC_ROUTES_LOCAL_DEVICE="cpu")
            face = write_h264(root / "face.mp4", astronaut_frames(int(audio_s * 25)))
            voice = make_wav(root / "voice.wav", audio_s)
            for actors in (1, 2):
                with RayExecutor(local_actors=actors, actor_setup=tiny_setup) as executor:
                    out = root / f"actors-{actors}"
                    out.mkdir()
                    warm = items_for(actors, face, voice, out / "warm", "local", inference_steps=1)
                    (out / "warm").mkdir()
                    executor.run(LipSyncClient(), warm, limits={"local": actors}, events=Quiet(), stop=StopSignal())
                    batch = items_for(jobs, face, voice, out, "local", inference_steps=1)
                    started = time.perf_counter()
                    outcomes = executor.run(LipSyncClient(), batch, limits={"local": actors}, events=Quiet(),
                                            stop=StopSignal())  # fmt: skip
                    wall = time.perf_counter() - started
                figures[f"actors_{actors}_ok"] = sum(isinstance(o, LipSyncResult) for o in outcomes.values())
                figures[f"actors_{actors}_s"] = round(wall, 2)
                figures[f"actors_{actors}_jobs_per_min"] = round(jobs / wall * 60, 2)
    finally:
        ray.shutdown()
    figures["throughput_two_over_one"] = round(figures["actors_1_s"] / figures["actors_2_s"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--queue-polls", type=int, default=3, help="polls each fake job stays queued")
    parser.add_argument("--poll-s", type=float, default=0.2, help="the route's poll interval")
    parser.add_argument("--local-jobs", type=int, default=6)
    parser.add_argument("--local-audio-s", type=float, default=0.6)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--skip-hosted", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    if not args.skip_hosted:
        hosted = report["hosted"] = bench_hosted(args.jobs, args.concurrency, args.queue_polls, args.poll_s)
        if not args.json:
            print(f"hosted: {hosted['jobs']} jobs at concurrency {hosted['concurrency']}: makespan "
                  f"{hosted['makespan_s']} s, ideal {hosted['ideal_s']} s (one job alone {hosted['one_job_alone_s']} s)"
                  f" -> makespan/ideal {hosted['makespan_over_ideal']}x; {hosted['jobs_per_s']} jobs/s; "
                  f"{hosted['ok']} ok, {hosted['provider_jobs_created']} provider jobs; peak RSS +"
                  f"{hosted['peak_rss_growth_mb']} MB", flush=True)  # fmt: skip
    if not args.skip_local:
        local = report["local"] = bench_local(args.local_jobs, args.ray_cpus, args.local_audio_s)
        if not args.json:
            print(f"local on Ray: {local['jobs']} jobs of {local['audio_s']} s: one actor {local['actors_1_s']} s "
                  f"({local['actors_1_jobs_per_min']} jobs/min), two actors {local['actors_2_s']} s "
                  f"({local['actors_2_jobs_per_min']} jobs/min) -> throughput ratio "
                  f"{local['throughput_two_over_one']}x", flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
