"""Benchmarks of the hosted routes against the loopback fakes (no network, no GPU).

Three measurements, each printed with its ratio or target:

1. **Overhead**: jobs through ``LipSyncClient`` (probe, policy, journal, retries, download checks) against
   the bare SDK path (upload, submit/create, poll, fetch, download) on the same fake server: wall time
   per job and HTTP requests per job, for fal and Replicate. The job's own requests are compared; the
   provider's cost lookups our route adds (fal's billing events, one per job where the key may read them,
   which the bare path never asks) are counted apart, and are inside the wall time.
2. **Large upload**: a 1 GB input (a real mp4 followed by a sparse 1 GB ``free`` box, so it probes as a
   video yet costs no disk until written) through the fal route; the peak growth of this process's RSS
   while it runs (target < 100 MB) and the throughput.
3. **Concurrency**: N jobs at once through ``AsyncLipSyncClient`` with a per-route limit; wall time,
   jobs/s, the most jobs the server saw in flight at once, and jobs created (must equal N).

The fakes run in a child process so their memory and CPU do not count against the client's figures.

    python benchmarks/bench_hosted.py                  # everything, default sizes
    python benchmarks/bench_hosted.py --jobs 5 --concurrent 50 --upload-mb 200 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAL_KEY = "bench-key"
TOKEN = "r8_bench"
APP = "fal-ai/latentsync"
#: Requests that ask the provider what a job cost (not part of running it): counted apart from the job's own.
COST_LOOKUPS = frozenset({"billing_events"})


# ------------------------------------------------------------------------------------------ fake process
def _serve(kind: str, options: dict[str, Any], conn: Any) -> None:
    from latentsync_routes.testing import FakeFal, FakeReplicate

    server = (
        FakeFal(expected_key=FAL_KEY, **options) if kind == "fal" else FakeReplicate(expected_token=TOKEN, **options)
    )
    with server:
        conn.send(server.url)
        while True:
            command = conn.recv()
            if command == "stop":
                break
            if command == "clear":
                server.clear_requests()
                conn.send(None)
            elif command == "stats":
                conn.send(
                    {
                        "requests": [(r.endpoint, r.path, r.started_at) for r in server.requests],
                        "jobs": len(server.jobs),
                    }
                )


@contextmanager
def fake(kind: str, **options: Any) -> Iterator[Callable[[str], Any]]:
    """A fake server in a child process; yields ``ask(command)`` (url, stats, clear)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(kind, options, child), daemon=True)
    process.start()
    url = parent.recv()

    def ask(command: str) -> Any:
        if command == "url":
            return url
        parent.send(command)
        return parent.recv()

    try:
        yield ask
    finally:
        parent.send("stop")
        process.join(10)


# ------------------------------------------------------------------------------------------ helpers
def make_media(folder: Path) -> tuple[Path, Path]:
    from tests.mediafactory import make_video, make_wav

    return make_video(folder / "clip.mp4", 1.0), make_wav(folder / "voice.wav", 1.0)


def set_env(home: Path, **extra: str) -> None:
    for name in list(os.environ):
        if name.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_")):
            del os.environ[name]
    os.environ.update(
        {
            "LATENTSYNC_ROUTES_HOME": str(home),
            "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.01",
            "LATENTSYNC_ROUTES_POLICY__FACE_CHECK": "false",  # synthetic clips show no face
            "LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "false",  # fakes beat any estimate
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "REPLICATE_POLL_INTERVAL": "0.01",
            **extra,
        }
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident set every 5 ms in a thread."""

    def __init__(self) -> None:
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.baseline


def download(url: str, dest: Path) -> None:
    import httpx

    with httpx.stream("GET", url) as response, dest.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            out.write(chunk)


# ------------------------------------------------------------------------------------------ 1. overhead
def raw_fal_job(client: Any, video: Path, audio: Path, out: Path) -> None:
    video_url, audio_url = client.upload_file(video), client.upload_file(audio)
    handle = client.submit(APP, {"video_url": video_url, "audio_url": audio_url})
    for _ in handle.iter_events(with_logs=True, interval=0.01):
        pass
    response = handle.client.get(handle.response_url)  # the only way to see x-fal-billable-units
    response.raise_for_status()
    download(response.json()["video"]["url"], out)


def raw_replicate_job(client: Any, version: str, video: Path, audio: Path, out: Path) -> None:
    files = [client.files.create(video), client.files.create(audio)]
    prediction = client.predictions.create(
        version=version, input={"video": files[0].urls["get"], "audio": files[1].urls["get"]}, wait=False
    )
    prediction.wait()
    download(str(prediction.output), out)
    for file in files:
        client.files.delete(file.id)


def bench_overhead(kind: str, jobs: int, work: Path) -> dict[str, Any]:
    from latentsync_routes import LipSyncClient
    from latentsync_routes.routes.fal.hosts import host_urls
    from latentsync_routes.routes.replicate.route import PINNED_VERSION

    video, audio = make_media(work)
    with fake(kind) as ask:
        url = ask("url")
        set_env(work / f"home-{kind}", **{f"LATENTSYNC_ROUTES_{kind.upper()}_BASE_URL": url})
        if kind == "fal":
            import fal_client
            import fal_client.client as module

            saved = {name: getattr(module, name) for name in host_urls(url)}
            for name, value in host_urls(url).items():
                setattr(module, name, value)
            raw_client = fal_client.SyncClient(key=FAL_KEY)

            def raw(i: int) -> None:
                raw_fal_job(raw_client, video, audio, work / f"raw-{kind}-{i}.mp4")
        else:
            import replicate

            rep_client = replicate.Client(api_token=TOKEN, base_url=url)
            rep_client.poll_interval = 0.01

            def raw(i: int) -> None:
                raw_replicate_job(rep_client, PINNED_VERSION, video, audio, work / f"raw-{kind}-{i}.mp4")

        ours_client = LipSyncClient(route=kind, credentials={"fal": FAL_KEY, "replicate": TOKEN}, consent="bench")

        def ours(i: int) -> None:
            ours_client.run(video, audio, work / f"ours-{kind}-{i}.mp4")

        figures: dict[str, Any] = {}
        raw(-1)  # warm both paths (imports, connections, token and schema caches)
        if kind == "fal":
            for name, value in saved.items():
                setattr(module, name, value)
        ours(-1)
        for label, func in (("raw", raw), ("ours", ours)):
            if kind == "fal" and label == "raw":
                for name, value in host_urls(url).items():
                    setattr(module, name, value)
            ask("clear")
            times = []
            for i in range(jobs):
                started = time.perf_counter()
                func(i)
                times.append(time.perf_counter() - started)
            if kind == "fal" and label == "raw":
                for name, value in saved.items():
                    setattr(module, name, value)
            stats = ask("stats")
            lookups = sum(1 for endpoint, _, _ in stats["requests"] if endpoint in COST_LOOKUPS)
            figures[label] = {
                "mean_s": statistics.mean(times),
                "median_s": statistics.median(times),
                "requests_per_job": (len(stats["requests"]) - lookups) / jobs,
                "cost_lookups_per_job": lookups / jobs,
            }
        # Medians: one job stalled by another process on a shared machine should not decide the ratio.
        figures["wall_ratio"] = figures["ours"]["median_s"] / figures["raw"]["median_s"]
        figures["request_ratio"] = figures["ours"]["requests_per_job"] / figures["raw"]["requests_per_job"]
        return figures


# ------------------------------------------------------------------------------------------ 2. large upload
def sparse_video(work: Path, megabytes: int) -> Path:
    """A real 1 s mp4 followed by a ``free`` box of ``megabytes`` MiB (sparse: no disk until written)."""
    from tests.mediafactory import make_video

    path = make_video(work / "big.mp4", 1.0)
    size = megabytes * 1024 * 1024
    with path.open("r+b") as handle:
        handle.seek(0, os.SEEK_END)
        handle.write(struct.pack(">I4s", size, b"free"))
        handle.truncate(handle.tell() + size - 8)
    return path


def bench_upload(megabytes: int, work: Path) -> dict[str, Any]:
    from latentsync_routes import LipSyncClient
    from tests.mediafactory import make_wav

    video, audio = sparse_video(work, megabytes), make_wav(work / "voice.wav", 1.0)
    with fake("fal") as ask:
        set_env(work / "home-upload", LATENTSYNC_ROUTES_FAL_BASE_URL=ask("url"))
        client = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="bench")
        small = make_media(work)
        client.run(*small, work / "warm.mp4")  # imports and first-use caches outside the measurement
        ask("clear")
        meter = PeakRSS()
        started = time.perf_counter()
        result = client.run(video, audio, work / "big-out.mp4")
        seconds = time.perf_counter() - started
        growth = meter.stop()
        stats = ask("stats")
    parts = sum(1 for endpoint, _, _ in stats["requests"] if endpoint == "multipart_part")
    return {
        "input_bytes": video.stat().st_size,
        "seconds": seconds,
        "mb_per_s": video.stat().st_size / 1e6 / seconds,
        "peak_rss_growth_mb": growth / 1e6,
        "target_mb": 100,
        "multipart_parts": parts,
        "state": result.record.state,
    }


# ------------------------------------------------------------------------------------------ 3. concurrency
def bench_concurrent(count: int, limit: int, work: Path) -> dict[str, Any]:
    from latentsync_routes import AsyncLipSyncClient

    video, audio = make_media(work)
    with fake("fal", queue_polls=2, progress_polls=2) as ask:
        set_env(work / "home-conc", LATENTSYNC_ROUTES_FAL_BASE_URL=ask("url"), LATENTSYNC_ROUTES_POLL_INTERVAL="0.05")
        client = AsyncLipSyncClient(
            route="fal", concurrency={"fal": limit}, credentials={"fal": FAL_KEY}, consent="bench"
        )

        async def main() -> list[Any]:
            jobs = [client.run(video, audio, work / f"c-{i}.mp4") for i in range(count)]
            try:
                return await asyncio.gather(*jobs, return_exceptions=True)
            finally:
                await client.aclose()

        started = time.perf_counter()
        results = asyncio.run(main())
        seconds = time.perf_counter() - started
        stats = ask("stats")
    failures = [r for r in results if isinstance(r, BaseException)]
    spans: dict[str, list[float]] = {}
    for endpoint, path, at in stats["requests"]:
        if endpoint in ("status", "result"):
            spans.setdefault(path.split("/requests/")[1].split("/")[0], []).append(at)
    events = sorted([(min(t), 1) for t in spans.values()] + [(max(t), -1) for t in spans.values()])
    in_flight = peak = 0
    for _, delta in events:
        in_flight += delta
        peak = max(peak, in_flight)
    return {
        "jobs": count,
        "limit": limit,
        "seconds": seconds,
        "jobs_per_s": count / seconds,
        "server_jobs": stats["jobs"],
        "failures": len(failures),
        "peak_in_flight": peak,
    }


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per path in the overhead run")
    parser.add_argument("--upload-mb", type=int, default=1024, help="size of the large upload (MiB)")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--limit", type=int, default=16, help="per-route concurrency limit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-hosted-") as tmp:
        work = Path(tmp)
        for kind in ("fal", "replicate"):
            (work / kind).mkdir()
            report[f"overhead_{kind}"] = bench_overhead(kind, args.jobs, work / kind)
        (work / "upload").mkdir()
        report["upload"] = bench_upload(args.upload_mb, work / "upload")
        (work / "concurrent").mkdir()
        report["concurrent"] = bench_concurrent(args.concurrent, args.limit, work / "concurrent")
    report["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for kind in ("fal", "replicate"):
        o = report[f"overhead_{kind}"]
        print(
            f"{kind:9s} overhead: ours {o['ours']['median_s'] * 1000:7.1f} ms/job vs raw SDK "
            f"{o['raw']['median_s'] * 1000:7.1f} ms/job (medians) -> wall ratio {o['wall_ratio']:.2f}; requests/job "
            f"{o['ours']['requests_per_job']:.1f} vs {o['raw']['requests_per_job']:.1f} -> ratio "
            f"{o['request_ratio']:.2f}; cost lookups/job {o['ours']['cost_lookups_per_job']:.1f} (ours) vs "
            f"{o['raw']['cost_lookups_per_job']:.1f}"
        )
    u = report["upload"]
    print(
        f"upload    {u['input_bytes'] / 2**20:.0f} MiB via fal multipart ({u['multipart_parts']} parts): "
        f"{u['seconds']:.1f} s, {u['mb_per_s']:.0f} MB/s, peak RSS growth {u['peak_rss_growth_mb']:.1f} MB "
        f"(target < {u['target_mb']} MB): {'ok' if u['peak_rss_growth_mb'] < u['target_mb'] else 'OVER'}"
    )
    c = report["concurrent"]
    print(
        f"async     {c['jobs']} jobs, route limit {c['limit']}: {c['seconds']:.1f} s, {c['jobs_per_s']:.1f} jobs/s, "
        f"peak in flight {c['peak_in_flight']} (limit {c['limit']}), server jobs {c['server_jobs']}, "
        f"failures {c['failures']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
