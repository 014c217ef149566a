"""The ``local`` route: LatentSync 1.5/1.6 on the user's own machine; nothing is uploaded."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import DeadlineExceeded, InputError, LatentSyncError, LocalRouteError, RouteError
from ..media import safe_name
from ..pricing import estimate_local
from ..types import CostEstimate, LipSyncRequest, MediaInfo, MediaSource
from .base import (
    JobContext,
    ParameterSpec,
    RouteInfo,
    RouteOutput,
    map_parameters,
    module_available,
    not_installed_message,
)

if TYPE_CHECKING:
    from ..config import Credential, Settings

log = logging.getLogger(__name__)

INFO = RouteInfo(
    name="local",
    description="LatentSync 1.5 (256 px) / 1.6 (512 px) in this package's own torch code, on this machine",
    owner="you: the job runs on your machine",
    model="ByteDance/LatentSync-1.5 or ByteDance/LatentSync-1.6 (Hugging Face checkpoints)",
    model_version="chosen at run time (version='auto' picks by free VRAM)",
    billing_owner="you (your hardware; $0 unless you set local_gpu_hour_usd)",
    uploads_media=False,
    upload_destination="none: inputs and outputs stay on this machine",
    retention="your storage: inputs are never copied; the output stays where you write it",
    retention_days=0.0,
    deletion="delete_job removes the output and the job's temporary files",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="no provider bills you; a failed run costs only your hardware time",
    failure_billing_source="https://github.com/bytedance/LatentSync",
    support_path=["https://github.com/bytedance/LatentSync/issues"],
    credential_env=None,
    install_extra="local",
    sources=["https://github.com/bytedance/LatentSync", "https://huggingface.co/ByteDance/LatentSync-1.6"],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=1.0, maximum=3.0, default=1.5),
        ParameterSpec(name="inference_steps", kind="int", minimum=1, maximum=100, default=20),
        ParameterSpec(name="seed", kind="int"),
        ParameterSpec(name="loop_mode", kind="str", choices=["pingpong", "loop"], default="pingpong"),
        ParameterSpec(name="on_missing_face", kind="str", choices=["error", "passthrough"], default="error"),
        ParameterSpec(name="face_detector", kind="str", choices=["mediapipe", "insightface"], default="mediapipe"),
        ParameterSpec(name="deepcache", kind="bool", choices=[False, True], default=False),
    ],
)


#: The official scripts' default seed: runs without a seed are reproducible, and match the official CPU draws.
DEFAULT_SEED = 1247


class LocalRoute:
    """LatentSync on this machine through :func:`latentsync_routes.local.pipeline.sync_video`.

    Models come from the process-wide cache in :mod:`latentsync_routes.local.runtime` (loaded once, shared by
    jobs); an application or a test can put its own model set there with ``runtime.register_models``.
    """

    name: ClassVar[str] = "local"
    INFO: ClassVar[RouteInfo] = INFO

    def __init__(self, *, settings: Settings, credential: Credential | None = None) -> None:
        self.settings = settings

    def info(self) -> RouteInfo:
        return INFO

    def availability(self) -> str | None:
        for module in ("torch", "numpy", "diffusers", "huggingface_hub"):
            if not module_available(module):
                return not_installed_message("local", module, "local")
        return None

    def _choice(self) -> Any:
        from ..local.runtime import choose

        return choose(self.settings.local_version, self.settings.local_device)

    def device_and_version(self) -> tuple[str, str]:
        """The device and LatentSync version a job would use now (see :meth:`describe_choice`).

        Without the ``local`` extra nothing can be probed; estimates then assume the configured device (a
        CUDA GPU unless set) and version (1.5 for ``auto``), so pricing every route still works.
        """
        if self.availability() is not None:
            version = self.settings.local_version if self.settings.local_version != "auto" else "1.5"
            return self.settings.local_device or "cuda", version
        choice = self._choice()
        return choice.device, choice.version

    def describe_choice(self) -> dict[str, Any]:
        """Device, version, dtype and the reason for them, warnings, and whether the checkpoints are here."""
        why_not = self.availability()
        if why_not is not None:
            return {"reason": why_not}
        choice = self._choice()
        report: dict[str, Any] = choice.as_dict()
        from ..local.runtime import cpu_seconds_per_output_second

        if choice.device.split(":", 1)[0] == "cpu":
            report["cpu_seconds_per_output_second"] = cpu_seconds_per_output_second(choice.version)
        try:
            from ..local.checkpoints import CheckpointError, resolve

            resolve(choice.version)
            report["checkpoints"] = "present"
        except CheckpointError as exc:
            report["checkpoints"] = exc.message
        except ImportError as exc:  # pragma: no cover - only without the local extra
            report["checkpoints"] = f"cannot check: {exc}"
        return report

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(INFO, request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        device, version = self.device_and_version()
        return estimate_local(
            audio.duration, version=version, device=device, gpu_hour_usd=self.settings.local_gpu_hour_usd
        )

    def cancel_job(self, job: JobContext) -> str:
        """A local job that nobody runs has nothing running anywhere: it is only marked cancelled."""
        job.mark("cancelled", failure_reason="JobCancelled: cancelled by the caller")
        return "the local job was not running; it is marked cancelled"

    def execute(self, job: JobContext) -> RouteOutput:
        """Run the job here: choose, load (once per process), stream the video through the pipeline."""
        from ..download import destination_for, ensure_writable
        from ..retry import record_attempt
        from ..types import utcnow

        ensure_writable(job, "local")
        params = {spec.name: spec.default for spec in INFO.parameters}
        params.update(map_parameters(INFO, job.request))
        choice = self._choice()
        for warning in choice.warnings:
            log.warning("local route: %s", warning)
            job.report(f"warning: {warning}", None)
        if choice.device.split(":", 1)[0] == "cpu":
            guess = estimate_local(job.audio_info.duration, version=choice.version, device="cpu")
            job.report(f"CPU run: about {(guess.expected_wall_seconds or 0) / 60:.0f} min expected", None)
        started_at = utcnow()
        started = time.monotonic()
        try:
            output = self._run(job, choice, params, destination_for(job))
        except LatentSyncError as exc:
            record_attempt(job, "run", ok=False, started_at=started_at, error=_as_route_error(exc))
            raise
        except Exception as exc:  # model loading, or anything else outside the pipeline's own translation
            error = _translate(exc)
            record_attempt(job, "run", ok=False, started_at=started_at, error=_as_route_error(error))
            raise error from exc
        wall = time.monotonic() - started
        record_attempt(job, "run", ok=True, started_at=started_at)
        on_cpu = choice.device.split(":", 1)[0] == "cpu"
        rate = 0.0 if on_cpu else self.settings.local_gpu_hour_usd
        cost = round(wall / 3600 * rate, 6)
        basis = (
            f"{wall:.1f} s of wall time on {choice.device}"
            + (" (CPU time is not billed)" if on_cpu else f" x ${rate}/GPU-hour = ${cost:.6f}")
        )
        job.mark("completed")
        return RouteOutput(output_path=output, actual_cost=cost, cost_basis=basis)

    def _run(self, job: JobContext, choice: Any, params: dict[str, Any], output: Path) -> Path:
        from ..local import runtime
        from ..local.pipeline import sync_video

        job.report(f"LatentSync {choice.version} on {choice.device}: {choice.reason}", 0.0)
        models = runtime.get_models(choice)  # same cache rule as `latentsync-routes download`
        job.mark(model_version=models.model_version, weights_licence=models.weights_licence)
        seed = params["seed"] if params.get("seed") is not None else DEFAULT_SEED
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        detector = self._detector(str(params["face_detector"]))

        def should_stop() -> None:
            if job.remaining() <= 0:
                raise DeadlineExceeded(
                    f"the local run passed its deadline ({self.settings.deadline_seconds:g} s; raise "
                    "deadline_seconds for long videos or slow devices)",
                    route="local",
                )

        inputs = Path(tempfile.mkdtemp(prefix="latentsync-inputs-"))  # private: bytes inputs land here
        try:
            video = _local_path(job.request.video, inputs, "video")
            audio = _local_path(job.request.audio, inputs, "audio")
            stats = sync_video(
                video, audio, output,
                unet=models.unet, vae=models.vae, whisper=models.whisper, mask=models.mask, detector=detector,
                resolution=models.resolution, num_inference_steps=int(params["inference_steps"]),
                guidance_scale=float(params["guidance_scale"]), generator=generator,
                loop_mode=params["loop_mode"], on_missing_face=params["on_missing_face"],
                deepcache=bool(params["deepcache"]), progress=job.report, exclusive=models.lock,
                should_stop=should_stop,
            )  # fmt: skip
        except LatentSyncError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
            close = getattr(detector, "close", None)
            if callable(close):
                close()
        if stats.missing_faces:
            shown = ", ".join(str(i) for i in stats.missing_faces[:10])
            more = f" and {len(stats.missing_faces) - 10} more" if len(stats.missing_faces) > 10 else ""
            job.report(f"{len(stats.missing_faces)} frame(s) without a face passed through: {shown}{more}", None)
        job.report(f"wrote {stats.frames_written} frames in {stats.seconds:.1f} s (seed {seed})", 1.0)
        return stats.output_path

    def _detector(self, name: str) -> Any:
        from ..local.faces import InsightFaceDetector, MediaPipeDetector

        if name == "insightface":
            return InsightFaceDetector(self.settings.home / "models" / "insightface")
        return MediaPipeDetector()


def _local_path(source: MediaSource, folder: Path, role: str) -> Path:
    """A file the pipeline can open: paths are read in place, bytes are written to the job's private folder.

    URLs are refused rather than fetched: the local route promises that nothing leaves or enters the machine
    behind the user's back, and a download is the user's decision.
    """
    if source.kind == "path" and source.path is not None:
        return Path(source.path)
    if source.kind == "bytes" and source.data is not None:
        target = folder / f"{role}-{safe_name(source.name or '', default='input.bin')}"
        target.write_bytes(source.data)
        return target
    raise InputError(
        f"the local route reads local files or bytes; download {source.describe()} first", route="local"
    )


def _translate(exc: Exception) -> LatentSyncError:
    """Typed errors for what can go wrong inside the pipeline."""
    from ..local.video import VideoError

    name = type(exc).__name__
    if name == "OutOfMemoryError":
        return LocalRouteError(
            f"out of GPU memory ({exc}); free VRAM, use local_version='1.5', or run on the CPU", route="local"
        )
    if isinstance(exc, VideoError):
        return LocalRouteError(f"media error: {exc}", route="local")
    return LocalRouteError(f"{name}: {exc}", route="local")


def _as_route_error(exc: LatentSyncError) -> RouteError:
    return exc if isinstance(exc, RouteError) else RouteError(exc.message, route="local")
