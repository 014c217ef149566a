"""The ``local`` route: LatentSync 1.5/1.6 on the user's own machine; nothing is uploaded."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import (
    ConfigurationError,
    DeadlineExceeded,
    InputError,
    InvalidParameter,
    LatentSyncError,
    LocalRouteError,
    RouteError,
    RouteNotInstalled,
)
from ...media import output_duration, safe_name
from ...types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource
from ..base import (
    JobContext,
    ParameterSpec,
    RouteInfo,
    RouteOutput,
    map_parameters,
    module_available,
    not_installed_message,
)
from . import NAME

if TYPE_CHECKING:
    from ...config import Credential, Settings

log = logging.getLogger(__name__)

INFO = RouteInfo(
    name=NAME,
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
    # one GPU runs one job at a time (a second would only compete for its memory); Ray's pool sets its own
    default_concurrency=1,
    install_extra="local",
    sources=["https://github.com/bytedance/LatentSync", "https://huggingface.co/ByteDance/LatentSync-1.6"],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=1.0, maximum=3.0, default=1.5),
        ParameterSpec(name="inference_steps", kind="int", minimum=1, maximum=100, default=20),
        ParameterSpec(name="seed", kind="int"),
        ParameterSpec(name="loop_mode", kind="str", choices=["pingpong", "loop"], default="pingpong"),
        ParameterSpec(name="on_missing_face", kind="str", choices=["error", "passthrough"], default="error"),
        ParameterSpec(name="face_detector", kind="str", choices=["mediapipe", "insightface"], default="mediapipe"),
        # The official inference script, its shell wrapper and its app run with DeepCache (interval 3).
        ParameterSpec(name="deepcache", kind="bool", choices=[False, True], default=True),
        ParameterSpec(name="dtype", kind="str", choices=["auto", "float32", "bfloat16", "float16"], default="auto"),
        ParameterSpec(name="compile", kind="bool", choices=[False, True], default=False),
    ],
)


#: The official scripts' default seed: runs without a seed are reproducible, and match the official CPU draws.
DEFAULT_SEED = 1247


class LocalRoute:
    """LatentSync on this machine through :func:`latentsync_routes.local.pipeline.sync_video`.

    Models come from the process-wide cache in :mod:`latentsync_routes.local.runtime` (loaded once, shared by
    jobs); an application or a test can put its own model set there with ``runtime.register_models``.
    """

    name: ClassVar[str] = NAME
    INFO: ClassVar[RouteInfo] = INFO

    def __init__(self, *, settings: Settings, credential: Credential | None = None) -> None:
        self.settings = settings

    def info(self) -> RouteInfo:
        return INFO

    def sandbox(self) -> bool:
        """Local jobs cost what the machine costs: never sandbox money."""
        return False

    def availability(self) -> str | None:
        for module in ("torch", "numpy", "diffusers", "huggingface_hub"):
            if not module_available(module):
                return not_installed_message("local", module, "local")
        return None

    def choice(self, dtype: str | None = None) -> Any:
        """The device, version and dtype a job asking for ``dtype`` runs with on this machine, and why. A Ray
        worker asks its own route, so a job's choice is that of the machine that runs it."""
        from ...local.runtime import choose

        try:
            return choose(self.settings.local_version, self.settings.local_device, requested_dtype=dtype)
        except ValueError as exc:  # an impossible dtype for the device (fp16 on a CPU)
            raise InvalidParameter("dtype", str(exc), route="local") from None

    def device_and_version(self, dtype: str | None = None) -> tuple[str, str, str]:
        """The device, LatentSync version and dtype a job would use now (see :meth:`describe_choice`).

        Without the ``local`` extra nothing can be probed; estimates then assume the configured device (a
        CUDA GPU when ``nvidia-smi`` is on the PATH, else the CPU) and version (1.5 for ``auto``), so
        pricing every route still works and never quotes GPU figures for a machine without one.
        """
        if self.availability() is not None:
            from ...local.precision import resolve_dtype

            version = self.settings.local_version if self.settings.local_version != "auto" else "1.5"
            device = self.settings.local_device or ("cuda" if shutil.which("nvidia-smi") else "cpu")
            try:
                return device, version, resolve_dtype(dtype, device)
            except ValueError as exc:
                raise InvalidParameter("dtype", str(exc), route="local") from None
        choice = self.choice(dtype)
        return choice.device, choice.version, choice.dtype

    def describe_choice(self) -> dict[str, Any]:
        """Device, version, dtype and the reason for them, warnings, and whether the checkpoints are here."""
        why_not = self.availability()
        if why_not is not None:
            return {"reason": why_not}
        choice = self.choice()
        report: dict[str, Any] = choice.as_dict()
        from ...local.runtime import cpu_seconds_per_output_second

        if choice.device.split(":", 1)[0] == "cpu":
            report["cpu_seconds_per_output_second"] = cpu_seconds_per_output_second(choice.version)
        try:
            from ...local.checkpoints import CheckpointError, resolve

            resolve(choice.version)
            report["checkpoints"] = "present"
        except CheckpointError as exc:
            report["checkpoints"] = exc.message
        except ImportError as exc:  # pragma: no cover - only without the local extra
            report["checkpoints"] = f"cannot check: {exc}"
        return report

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(INFO, request)

    def _params(self, request: LipSyncRequest) -> dict[str, Any]:
        params = {spec.name: spec.default for spec in INFO.parameters}
        params.update(map_parameters(INFO, request))
        return params

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        """Time (and, at ``local_gpu_hour_usd``, money) on the device, dtype and settings the job will use."""
        params = self._params(request)
        device, version, dtype = self.device_and_version(str(params["dtype"]))
        return local_estimate(
            audio.duration, device=device, dtype=dtype, version=version, deepcache=bool(params["deepcache"]),
            steps=int(params["inference_steps"]), gpu_hour_usd=self.settings.local_gpu_hour_usd,
        )  # fmt: skip

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """Nothing of a local job is anywhere else: its output and staged inputs are the caller's to delete."""
        return [], []

    def cancel_job(self, job: JobContext) -> str:
        """A local job that nobody runs has nothing running anywhere: it is only marked cancelled."""
        job.mark("cancelled", failure_reason="JobCancelled: cancelled by the caller")
        return "the local job was not running; it is marked cancelled"

    def execute(self, job: JobContext) -> RouteOutput:
        """Run the job here: choose, load (once per process), stream the video through the pipeline."""
        from ...download import destination_for, ensure_writable
        from ...retry import record_attempt
        from ...types import utcnow

        ensure_writable(job, "local")
        params = self._params(job.request)
        choice = self.choice(str(params["dtype"]))
        for warning in choice.warnings:
            log.warning("local route: %s", warning)
            job.report(f"warning: {warning}", None)
        if choice.device.split(":", 1)[0] == "cpu":
            guess = local_estimate(
                job.audio_info.duration, device=choice.device, dtype=choice.dtype, version=choice.version,
                deepcache=bool(params["deepcache"]), steps=int(params["inference_steps"]),
            )  # fmt: skip
            job.report(f"CPU run: about {(guess.expected_wall_seconds or 0) / 60:.0f} min expected", None)
        started_at = utcnow()
        started = time.monotonic()
        try:
            output = self.run_model(job, choice, params, destination_for(job))
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
        basis = f"{wall:.1f} s of wall time on {choice.device}" + (
            " (CPU time is not billed)" if on_cpu else f" x ${rate}/GPU-hour = ${cost:.6f}"
        )
        job.mark("completed")
        return RouteOutput(output_path=output, actual_cost=cost, cost_basis=basis)

    def run_model(self, job: JobContext, choice: Any, params: dict[str, Any], output: Path) -> Path:
        """The model work of one job, none of the bookkeeping around it (attempts, cost): ``execute`` runs it
        here and a Ray worker on its own machine, so a job's frames do not depend on where it ran."""
        from ...local import runtime
        from ...local.pipeline import sync_video

        job.report(f"LatentSync {choice.version} on {choice.device} in {choice.dtype}: {choice.reason}", 0.0)
        if self.settings.local_keep_freed_memory and choice.device.split(":", 1)[0] == "cpu":
            from ...local.allocator import keep_freed_memory

            keep_freed_memory()  # process-wide, once; 15-20 % less CPU time per chunk (docs/performance.md)
        models = runtime.get_models(choice)  # same cache rule as `latentsync-routes download`
        if params["compile"] and not models.compiled:
            job.report("compiling the UNet (torch.compile, once per process)", None)
            runtime.compile_models(models)
        job.mark(model_version=models.model_version, weights_licence=models.weights_licence)
        seed = params["seed"] if params.get("seed") is not None else DEFAULT_SEED
        import torch

        generator = torch.Generator().manual_seed(int(seed))
        detector = self.face_detector(str(params["face_detector"]))

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

    def face_detector(self, name: str) -> Any:
        """The job's face detector (``face_detector``), made per job; the caller closes it when it has ``close``."""
        from ...local.faces import InsightFaceDetector, MediaPipeDetector

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
    raise InputError(f"the local route reads local files or bytes; download {source.describe()} first", route="local")


def _translate(exc: Exception) -> LatentSyncError:
    """The package's typed errors for the local model's own (:mod:`latentsync_routes.local.errors`) and for
    what else can go wrong inside the pipeline."""
    from ...local.checkpoints import CheckpointError
    from ...local.errors import LocalError, ModuleMissing
    from ...local.video_base import VideoError

    if isinstance(exc, CheckpointError):  # the fix is a download: a configuration error, exit 2
        return ConfigurationError(exc.message, route="local")
    if isinstance(exc, ModuleMissing):
        return RouteNotInstalled(exc.message, route="local")
    if isinstance(exc, LocalError):
        return LocalRouteError(exc.message, route="local")
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


def local_estimate(
    audio_seconds: float,
    *,
    device: str,
    dtype: str,
    version: str,
    deepcache: bool = True,
    steps: int = 20,
    gpu_hour_usd: float = 0.0,
) -> CostEstimate:
    """A local job's time from the speed figures of :mod:`latentsync_routes.local.speed`, and its price.

    The job costs the user's own hardware time: $0 unless they set a $/GPU-hour (a CPU run is never
    billed). VRAM is quoted only for a GPU. Time scales with the number of DDIM steps (figures are for 20).
    """
    from ...local.speed import MEASURED_ON, speed_figure, vram_gb

    seconds = output_duration(audio_seconds)
    kind = device.split(":", 1)[0]
    figure = speed_figure(device, dtype, version, deepcache=deepcache)
    per_second = figure.wall_seconds_per_output_second * steps / 20
    wall = per_second * seconds
    amount = round(wall / 3600 * gpu_hour_usd, 6) if kind != "cpu" else 0.0
    vram = vram_gb(device, version)
    money = "CPU time is not billed" if kind == "cpu" else f"at ${gpu_hour_usd}/GPU-hour = ${amount:.4f}"
    basis = (
        f"LatentSync {version} on {device}: ~{per_second:.3g} s of wall time per output second x {seconds:.2f} s "
        f"= {wall:.0f} s ({figure.basis}{'' if steps == 20 else f'; x {steps}/20 steps'}); {money}"
        + ("" if vram is None else f"; needs ~{vram:g} GB VRAM")
    )
    return CostEstimate(
        route="local", currency="USD", amount=amount, low=round(amount * 0.5, 6), high=round(amount * 2.0, 6),
        is_exact=False, basis=basis, price_source="latentsync_routes.local.speed (your hardware's time)",
        price_checked=date.fromisoformat(MEASURED_ON), output_seconds=seconds, expected_wall_seconds=wall,
        expected_vram_gb=vram,
    )  # fmt: skip


def download_checkpoints(version: str, cache_dir: str | Path | None = None) -> Any:
    """``latentsync-routes download``: fetch and verify a version's checkpoints, with typed errors."""
    from ...local.checkpoints import download

    try:
        return download(version, cache_dir=cache_dir)
    except LatentSyncError:
        raise
    except Exception as exc:
        raise _translate(exc) from exc
