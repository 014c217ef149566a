"""What runs inside a Ray actor of the local pool: the local route's model work, and nothing that writes.

The worker never sees the journal, a claim or a credential. It gets a job's inputs (bytes shipped through
the object store, or paths on storage every node shares) and its parameters, runs the same code the local
route runs in-process (:meth:`LocalRoute.run_model`, so a job's frames do not depend on where it ran), and hands
back the output bytes, the model facts for the record and its progress messages. The driver writes all of
that; a worker that dies has written nothing anyone relies on, so its job can simply run again elsewhere.

This module imports neither ray nor torch at import time: :mod:`.ray_executor` wraps :class:`LocalWorker`
with ``ray.remote`` when it builds the pool, and the worker imports the local extra when it first runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeadlineExceeded, InputError, JobCancelled, LatentSyncError, LocalRouteError, RouteError

#: errors a worker hands back by name, rebuilt on the driver as the same type (anything else: LocalRouteError)
_KNOWN: dict[str, type[RouteError] | type[InputError]] = {
    "DeadlineExceeded": DeadlineExceeded,
    "JobCancelled": JobCancelled,
    "LocalRouteError": LocalRouteError,
    "InputError": InputError,
}


@dataclass(frozen=True)
class Inputs:
    """A job's two inputs as the worker receives them: bytes (any cluster) or paths (shared storage)."""

    video: bytes | str
    audio: bytes | str
    video_name: str = "video.mp4"
    audio_name: str = "audio.wav"

    def materialise(self, folder: Path) -> tuple[Path, Path]:
        """Files the pipeline can open: paths as they are, bytes written into ``folder``."""
        found = []
        for data, name in ((self.video, self.video_name), (self.audio, self.audio_name)):
            if isinstance(data, str):
                found.append(Path(data))
            else:
                target = folder / Path(name).name
                target.write_bytes(data)
                found.append(target)
        return found[0], found[1]


@dataclass
class WorkerResult:
    """What one call of a worker returns: output bytes (or an error by type name), messages, model facts."""

    ok: bool
    output: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    messages: list[tuple[str, float | None]] = field(default_factory=list)
    model_version: str | None = None
    weights_licence: str | None = None
    worker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def error(self) -> LatentSyncError:
        """The worker's failure as a typed error on the driver."""
        cls = _KNOWN.get(self.error_type or "")
        message = self.error_message or "the worker failed without a message"
        if cls is None:
            return LocalRouteError(f"{self.error_type}: {message}", route="local")
        return cls(message, route="local")


def worker_settings(fields: Mapping[str, Any]) -> Any:
    """The worker's own settings: its environment and config file, with the driver's local choices on top."""
    from ..config import load_settings

    return load_settings(**{k: v for k, v in fields.items() if v is not None})


class LocalWorker:
    """One member of the local pool: keeps its models loaded between jobs (the process-wide model cache).

    Runs with ``max_concurrency=2`` so the driver can read progress and cancel a job while it runs.
    ``setup`` (picklable, run once when the actor starts) lets an application put its own model set in the
    worker's cache, e.g. the tiny test models.
    """

    def __init__(self, settings_fields: Mapping[str, Any], setup: Callable[[], Any] | None = None) -> None:
        if setup is not None:
            setup()
        self.settings = worker_settings(settings_fields)
        self._lock = threading.Lock()
        self._messages: dict[str, list[tuple[str, float | None]]] = {}
        self._stops: dict[str, Callable[[], None]] = {}
        self._cancelled: set[str] = set()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    # -- control (the second concurrency slot) ---------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        """Where the worker runs and what the local route would choose there (device, version)."""
        from ..routes.local.route import LocalRoute

        route = LocalRoute(settings=self.settings)
        why_not = route.availability()
        choice = None if why_not else route.choice()
        return {"worker": self.name, "pid": os.getpid(), "why_not": why_not, "choice": choice}

    def messages(self, token: str, since: int) -> list[tuple[str, float | None]]:
        with self._lock:
            return list(self._messages.get(token, [])[since:])

    def cancel(self, token: str) -> bool:
        """Stop the job ``token`` at its next chunk boundary (it then returns ``JobCancelled``)."""
        with self._lock:
            self._cancelled.add(token)
            stop = self._stops.get(token)
        if stop is not None:
            stop()
        return stop is not None

    def _report(self, token: str) -> Callable[[str, float | None], None]:
        def report(message: str, fraction: float | None) -> None:
            with self._lock:
                self._messages.setdefault(token, []).append((message, fraction))

        return report

    # -- work -------------------------------------------------------------------------------------------
    def run(self, token: str, inputs: Inputs, params: Mapping[str, Any], remaining_s: float) -> WorkerResult:
        """Run one whole local job here and return the finished file's bytes."""
        from ..routes.base import JobContext
        from ..routes.local.route import LocalRoute
        from ..types import Cost, JobRecord, LipSyncRequest, MediaInfo, MediaSource

        route = LocalRoute(settings=self.settings)
        report = self._report(token)

        def work(folder: Path) -> WorkerResult:
            video, audio = inputs.materialise(folder)
            record = JobRecord(
                job_id=token, idempotency_key=token, route="local", route_owner="", billing_owner="", model="",
                model_version="", upload_destination="", retention_policy="", deletion_policy="",
                cost=Cost(estimated=0.0), library_version="",
            )  # fmt: skip
            info = MediaInfo(container="", duration=0.0)
            job = JobContext(
                record=record, request=LipSyncRequest(video=MediaSource.of(video), audio=MediaSource.of(audio)),
                video_info=info, audio_info=info, output_path=folder / "out.mp4", settings=self.settings,
                credential=None, deadline=time.monotonic() + remaining_s, progress=report,
            )  # fmt: skip
            with self._lock:
                if token in self._cancelled:
                    raise JobCancelled("cancelled before the worker started it", route="local")
                self._stops[token] = lambda: setattr(job, "deadline", float("-inf"))
            try:
                output = route.run_model(job, route.choice(_dtype(params)), dict(params), folder / "out.mp4")
            except DeadlineExceeded:
                with self._lock:
                    cancelled = token in self._cancelled
                if cancelled:
                    raise JobCancelled("cancelled by the caller", route="local") from None
                raise
            return WorkerResult(ok=True, output=Path(output).read_bytes(), messages=self._take(token),
                                model_version=record.model_version, weights_licence=record.weights_licence,
                                worker=self.name)  # fmt: skip

        return self._guarded(token, work)

    def plan(self, inputs: Inputs, params: Mapping[str, Any], segments: int) -> WorkerResult:
        """The whole-video pass of a split job (see :mod:`latentsync_routes.local.segments`), as ``extra["plan"]``."""
        from ..local import runtime
        from ..local.segments import plan_segments
        from ..routes.local.route import LocalRoute

        route = LocalRoute(settings=self.settings)

        def work(folder: Path) -> WorkerResult:
            models = runtime.get_models(route.choice(_dtype(params)))
            video, audio = inputs.materialise(folder)
            detector = route.face_detector(str(params["face_detector"]))
            try:
                plan = plan_segments(video, audio, whisper=models.whisper, detector=detector,
                                     resolution=models.resolution, segments=segments, loop_mode=params["loop_mode"],
                                     on_missing_face=params["on_missing_face"])  # fmt: skip
            finally:
                close = getattr(detector, "close", None)
                if callable(close):
                    close()
            return WorkerResult(
                ok=True,
                worker=self.name,
                model_version=models.model_version,
                weights_licence=models.weights_licence,
                extra={"plan": plan},
            )

        return self._guarded("", work)

    def segment(
        self, token: str, plan: Any, number: int, video: bytes | str, video_name: str, params: Mapping[str, Any],
        seed: int, remaining_s: float,
    ) -> WorkerResult:  # fmt: skip
        """One segment of a split job: its restored frames (uint8, raw) as ``extra["frames"]``, for the driver
        to join; stops at a chunk boundary once cancelled or past the deadline. ``plan`` and ``video`` come as
        top-level arguments so the driver can pass object refs (put once, read by every segment)."""
        from ..local import runtime
        from ..local.segments import run_segment
        from ..routes.local.route import LocalRoute

        deadline = [time.monotonic() + remaining_s]

        def should_stop() -> None:
            if time.monotonic() > deadline[0]:
                with self._lock:
                    cancelled = token in self._cancelled
                raise (
                    JobCancelled("cancelled by the caller", route="local")
                    if cancelled
                    else DeadlineExceeded("the segment passed the job's deadline", route="local")
                )

        with self._lock:
            self._stops[token] = lambda: deadline.__setitem__(0, float("-inf"))
        route = LocalRoute(settings=self.settings)

        def work(folder: Path) -> WorkerResult:
            models = runtime.get_models(route.choice(_dtype(params)))
            video_path, _ = Inputs(video=video, audio="", video_name=video_name).materialise(folder)
            frames = run_segment(plan, number, video_path, unet=models.unet, vae=models.vae, mask=models.mask,
                                 resolution=models.resolution, seed=seed,
                                 num_inference_steps=int(params["inference_steps"]),
                                 guidance_scale=float(params["guidance_scale"]), deepcache=bool(params["deepcache"]),
                                 exclusive=models.lock, should_stop=should_stop)  # fmt: skip
            return WorkerResult(
                ok=True,
                worker=self.name,
                model_version=models.model_version,
                weights_licence=models.weights_licence,
                extra={"frames": frames},
            )

        return self._guarded(token, work)

    def _guarded(self, token: str, work: Callable[[Path], WorkerResult]) -> WorkerResult:
        """Run ``work`` in a fresh folder. Any error is handed back by name (the driver turns it into a typed
        error); the folder and the token's stop hooks go whatever happens."""
        folder = Path(tempfile.mkdtemp(prefix="latentsync-ray-"))
        try:
            return work(folder)
        except LatentSyncError as exc:
            return self._failed(token, type(exc).__name__, exc.message)
        except Exception as exc:  # noqa: BLE001 - handed back by name
            return self._failed(token, type(exc).__name__, str(exc))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if token:
                with self._lock:
                    self._stops.pop(token, None)
                    self._cancelled.discard(token)

    def _take(self, token: str) -> list[tuple[str, float | None]]:
        with self._lock:
            return self._messages.pop(token, [])

    def _failed(self, token: str, name: str, message: str) -> WorkerResult:
        return WorkerResult(
            ok=False, error_type=name, error_message=message, messages=self._take(token), worker=self.name
        )


def _dtype(params: Mapping[str, Any]) -> str | None:
    """The dtype the job asked for (``auto`` lets the worker's device decide), as the local route reads it."""
    value = params.get("dtype")
    return str(value) if value is not None else None
