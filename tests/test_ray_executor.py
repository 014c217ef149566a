"""The Ray executor on a local Ray (``ray.init(num_cpus=2)``): local jobs on tiny models over two actors with
one killed mid-batch, hosted jobs against the fakes with faults, a driver killed mid-batch, and one long
video split over the actors. The driver owns the journal: every job ends once, no provider job is made twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.batch.executor import BatchItem, Outcome, StopSignal
from latentsync_routes.batch.ray_executor import RayExecutor
from latentsync_routes.journal import Journal
from latentsync_routes.testing import Fault
from latentsync_routes.types import LipSyncResult
from tests.hosted_fixtures import FAL_KEY, REPLICATE_TOKEN, fal, hosted_env, media, rep  # noqa: F401
from tests.mediafactory import make_wav

ray = pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra: pip install 'latentsync-routes[ray]'")

REPO_ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = 64  # the tiny models at a 64 px face crop: the same code path, a sixteenth of the work


def setup_tiny() -> None:
    """Run in each actor: the tiny models (64 px) in that process's model cache, for the CPU."""
    from latentsync_routes.local import runtime
    from latentsync_routes.testing.tiny_local import tiny_mask, tiny_models

    models = tiny_models("1.5", model_version="tiny ray test models")
    models.mask = tiny_mask(RESOLUTION)
    runtime.register_models(models)


class Events:
    """BatchEvents that keep everything, with an optional hook on progress messages."""

    def __init__(self, on_progress: Callable[[BatchItem, str], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.begun: list[int] = []
        self.ended: dict[int, Outcome] = {}
        self.messages: list[tuple[int, str]] = []
        self.on_progress = on_progress

    def started(self, item: BatchItem) -> None:
        with self.lock:
            self.begun.append(item.index)

    def progress(self, item: BatchItem, message: str, fraction: float | None) -> None:
        with self.lock:
            self.messages.append((item.index, message))
        if self.on_progress is not None:
            self.on_progress(item, message)

    def finished(self, item: BatchItem, outcome: Outcome) -> None:
        with self.lock:
            self.ended[item.index] = outcome


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
    yield
    ray.shutdown()


def face_clip(folder: Path, frames: int, seconds: float) -> tuple[Path, Path]:
    from tests.local_fixtures import astronaut_frames, write_h264

    return write_h264(folder / "face.mp4", astronaut_frames(frames)), make_wav(folder / "voice.wav", seconds)


def decode(path: str | Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def item(index: int, video: Path, audio: Path, output: Path, route: str, **options: Any) -> BatchItem:
    return BatchItem(
        index=index, line=index + 2, video=str(video), audio=str(audio), output=output, route=route, options=options
    )


def run_batch(executor: RayExecutor, client: LipSyncClient, items: list[BatchItem], events: Events,
              limits: dict[str, int] | None = None) -> dict[int, Outcome]:  # fmt: skip
    limits = limits or {"local": 2, "fal": 2, "replicate": 2}
    return executor.run(client, items, limits=limits, events=events, stop=StopSignal())


def test_without_local_jobs_no_ray_is_started(tmp_path: Path, fal: Any, media: tuple[Path, Path]) -> None:  # noqa: F811
    # Hosted jobs are the driver's light tasks: a hosted-only batch needs no cluster at all.
    video, audio = media
    client = LipSyncClient(credentials={"fal": FAL_KEY}, consent="test")
    items = [item(k, video, audio, tmp_path / f"fal-{k}.mp4", "fal", seed=k) for k in range(4)]
    executor = RayExecutor(address="ray://nowhere.invalid:10001")  # would fail if it were contacted
    outcomes = run_batch(executor, client, items, Events(), limits={"fal": 2})
    not_results = {k: repr(o) for k, o in outcomes.items() if not isinstance(o, LipSyncResult)}
    assert not not_results and len(outcomes) == 4, not_results
    assert len(fal.jobs) == 4 and executor.workers() == {}


@pytest.mark.slow
def test_a_killed_actor_reruns_its_job_and_hosted_jobs_run_once(
    tmp_path: Path, local_ray: None, fal: Any, rep: Any, media: tuple[Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    pytest.importorskip("mediapipe")
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    face, voice = face_clip(tmp_path, frames=5, seconds=0.2)
    video, audio = media
    # Faults the hosted template must absorb without a second provider job: a rate-limited submit, a
    # failing poll, and a Replicate create whose reply is lost after the prediction was made.
    fal.faults.submit.append(Fault.status(429, retry_after=0.01))
    fal.faults.status.append(Fault.status(503))
    rep.faults.create.append(Fault.drop_after_accept())
    local = [
        item(k, face, voice, tmp_path / f"local-{k}.mp4", "local", seed=3, inference_steps=1) for k in range(4)
    ]  # same inputs and seed, four outputs: four jobs, identical frames
    hosted = [item(4 + k, video, audio, tmp_path / f"{route}-{k}.mp4", route, seed=k)
              for k, route in enumerate(["fal", "replicate", "fal", "replicate"])]  # fmt: skip
    client = LipSyncClient(credentials={"fal": FAL_KEY, "replicate": REPLICATE_TOKEN}, consent="test")
    executor = RayExecutor(local_actors=2, actor_setup=setup_tiny)
    killed: list[str] = []

    def kill_first(batch_item: BatchItem, message: str) -> None:
        if batch_item.index == 0 and message.startswith("running on Ray worker") and not killed:
            name = message.removeprefix("running on Ray worker ")
            killed.append(name)
            ray.kill(executor.workers()[name], no_restart=True)

    try:
        events = Events(on_progress=kill_first)
        outcomes = run_batch(executor, client, local + hosted, events)
        assert killed, "the first local job never reached a worker"
        assert {k: type(o).__name__ for k, o in outcomes.items()} == {k: "LipSyncResult" for k in range(8)}
        assert sorted(events.begun) == list(range(8)) and set(events.ended) == set(range(8))
        assert len(fal.jobs) == 2 and len(rep.predictions) == 2  # one provider job per hosted item
        records = {k: o.record for k, o in outcomes.items() if isinstance(o, LipSyncResult)}
        assert all(r.state == "fetched" for r in records.values())
        assert [(a.step, a.status, a.error_type) for a in records[0].attempts] == [
            ("run", "error", "WorkerLost"),
            ("run", "ok", None),
        ]  # the lost try is on the record
        assert all([(a.step, a.status) for a in records[k].attempts] == [("run", "ok")] for k in (1, 2, 3))
        assert all(records[k].model_version == "tiny ray test models" for k in range(4))
        frames = [decode(tmp_path / f"local-{k}.mp4") for k in range(4)]
        assert all(f.shape == (7, 192, 160, 3) for f in frames)  # 0.2 s of audio: 7 output frames
        assert max(float(np.abs(f.astype(int) - frames[1]).mean()) for f in frames) < 2.0  # rerun: same video
        give_up = time.monotonic() + 120  # the replacement starts in the background
        while len(executor.workers()) < 2 and time.monotonic() < give_up:
            time.sleep(0.2)
        assert len(executor.workers()) == 2 and killed[0] not in executor.workers()  # replaced
        assert any(m.startswith("Ray worker") and "died mid-job" in m for i, m in events.messages if i == 0)

        # The same batch again: every job comes back from the journal; no provider request, no model work.
        fal_requests, rep_requests = len(fal.requests), len(rep.requests)
        again = Events()
        second = run_batch(executor, client, local + hosted, again)
        assert all(isinstance(o, LipSyncResult) for o in second.values())
        assert {o.record.job_id for o in second.values() if isinstance(o, LipSyncResult)} == {
            r.job_id for r in records.values()
        }
        assert (len(fal.requests), len(rep.requests)) == (fal_requests, rep_requests)
        assert not any("Ray worker" in m for _, m in again.messages)
    finally:
        executor.close()


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from latentsync_routes import LipSyncClient
    from latentsync_routes.batch.executor import BatchItem, StopSignal
    from latentsync_routes.batch.ray_executor import RayExecutor

    class Quiet:
        def started(self, item): print("started", item.index, flush=True)
        def progress(self, item, message, fraction): pass
        def finished(self, item, outcome): pass

    video, audio, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    items = [BatchItem(index=k, line=k + 2, video=video, audio=audio, output=out / f"fal-{k}.mp4", route="fal",
                       options={"seed": k}) for k in range(3)]
    RayExecutor().run(LipSyncClient(consent="test"), items, limits={"fal": 3}, events=Quiet(), stop=StopSignal())
""")


def recorded(journal: Journal) -> set[str]:
    """The provider request ids the journal holds: a job the driver has seen the provider accept."""
    return {r.provider_request_id for r in journal.list() if r.provider_request_id}


def test_a_killed_driver_resumes_its_hosted_jobs_without_a_new_submit(
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    fal: Any,
    media: tuple[Path, Path],  # noqa: F811
) -> None:
    # The only process that runs a hosted job is the driver: kill it with the provider jobs running (made at
    # the provider and recorded in the journal), and the next run of the batch carries on those same jobs.
    # Killed between the two, a job's submit is ambiguous; that case has its own tests (tests/test_resume.py).
    video, audio = media
    journal = Journal(hosted_env / "jobs.sqlite3")
    fal.queue_polls = 10**9  # every job stays queued until released
    env = {
        **os.environ,
        "FAL_KEY": FAL_KEY,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(video), str(audio), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        give_up = time.monotonic() + 120
        while len(recorded(journal)) < 3 and time.monotonic() < give_up and driver.poll() is None:
            time.sleep(0.1)
        assert len(recorded(journal)) == 3, driver.stderr.read().decode() if driver.poll() is not None else "no submits"
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    submitted = set(fal.jobs)
    assert recorded(journal) == submitted
    fal.queue_polls = 1
    for request_id in submitted:
        fal.complete(request_id)
    items = [item(k, video, audio, tmp_path / f"fal-{k}.mp4", "fal", seed=k) for k in range(3)]
    outcomes = run_batch(RayExecutor(), LipSyncClient(credentials={"fal": FAL_KEY}, consent="test"), items, Events(),
                         limits={"fal": 3})  # fmt: skip
    assert all(isinstance(o, LipSyncResult) for o in outcomes.values())
    assert set(fal.jobs) == submitted  # resumed, never submitted again
    assert {o.record.provider_request_id for o in outcomes.values() if isinstance(o, LipSyncResult)} == submitted
    assert len(fal.requests_for("submit")) == 3


def capture_encoded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[np.ndarray]]:
    """The frames each VideoWriter of this process is handed, by output file name (before lossy encoding:
    libx264 here does not give the same bytes for the same frames twice)."""
    from latentsync_routes.local import video_writer

    seen: dict[str, list[np.ndarray]] = {}
    original = video_writer.VideoWriter.write

    def write(self: Any, frame: np.ndarray) -> None:
        seen.setdefault(self.path.name, []).append(np.array(frame))
        original(self, frame)

    monkeypatch.setattr(video_writer.VideoWriter, "write", write)
    return seen


@pytest.mark.slow
def test_one_long_video_split_over_two_actors(tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mediapipe")
    import torch

    from latentsync_routes.local.faces import MediaPipeDetector
    from latentsync_routes.local.pipeline import sync_video
    from latentsync_routes.testing.tiny_local import tiny_mask, tiny_models

    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    encoded = capture_encoded(monkeypatch)  # the join runs here, on the driver
    face, voice = face_clip(tmp_path, frames=12, seconds=1.0)  # 27 output frames: two chunks, ping-pong
    executor = RayExecutor(local_actors=2, actor_setup=setup_tiny, segment_seconds=0.5)
    events = Events()
    try:
        outcomes = run_batch(executor, LipSyncClient(), [item(0, face, voice, tmp_path / "split.mp4", "local",
                                                              seed=5, inference_steps=1)], events)  # fmt: skip
    finally:
        executor.close()
    result = outcomes[0]
    assert isinstance(result, LipSyncResult), result
    messages = [m for _, m in events.messages]
    assert "split into 2 segments of 27 frames" in messages
    assert sum(m.startswith("segment ") and " done on " in m for m in messages) == 2
    assert result.record.model_version == "tiny ray test models"
    # The one-worker reference, here, with the same models, seed and parameters as the route's defaults.
    # Ray gives each 1-CPU actor one torch thread; float sums over another thread count may round apart.
    models, threads = tiny_models("1.5"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sync_video(face, voice, tmp_path / "one.mp4", unet=models.unet, vae=models.vae, whisper=models.whisper,
                   mask=tiny_mask(RESOLUTION), detector=MediaPipeDetector(), resolution=RESOLUTION,
                   num_inference_steps=1, generator=torch.Generator().manual_seed(5))  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    joined, one = np.stack(encoded["split.mp4"]), np.stack(encoded["one.mp4"])
    assert joined.shape == one.shape == (27, 192, 160, 3)
    diff = np.abs(joined.astype(int) - one)
    assert np.array_equal(joined, one), f"{(diff > 0).sum()} values differ, at most by {diff.max()}"
    assert decode(result.output_path or "").shape == joined.shape


@pytest.mark.slow
def test_a_stop_with_cancel_reaches_the_job_on_its_actor(
    tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mediapipe")
    from latentsync_routes.errors import JobCancelled

    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    face, voice = face_clip(tmp_path, frames=12, seconds=3.0)  # five chunks
    stop = StopSignal()

    def ctrl_c(batch_item: BatchItem, message: str) -> None:
        if message.startswith("chunk 1/"):
            stop.stop(cancel_running=True)

    events = Events(on_progress=ctrl_c)
    client = LipSyncClient()
    jobs = [item(k, face, voice, tmp_path / f"out-{k}.mp4", "local", seed=k, inference_steps=1) for k in range(2)]
    with RayExecutor(local_actors=1, actor_setup=setup_tiny) as executor:
        outcomes = executor.run(client, jobs, limits={"local": 1}, events=events, stop=stop)
        assert len(executor.workers()) == 1  # the actor was asked to stop, not killed
    assert isinstance(outcomes[0], JobCancelled)
    assert type(outcomes[1]).__name__ == "NotStarted"  # the second one never started
    messages = [m for i, m in events.messages if i == 0]
    assert not any(m.startswith("chunk 5/") for m in messages)  # it stopped at a chunk boundary
    record = client.journal.list()[0]
    assert record.state == "cancelled" and not (tmp_path / "out-0.mp4").exists()
