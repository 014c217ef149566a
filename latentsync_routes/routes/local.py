"""The ``local`` route: LatentSync 1.5/1.6 on the user's own machine; nothing is uploaded."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import RouteError
from ..pricing import estimate_local
from ..types import CostEstimate, LipSyncRequest, MediaInfo
from .base import JobContext, ParameterSpec, RouteInfo, RouteOutput, map_parameters, not_installed_message

if TYPE_CHECKING:
    from ..config import Credential, Settings

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
    ],
)


class LocalRoute:
    name: ClassVar[str] = "local"

    def __init__(self, *, settings: Settings, credential: Credential | None = None) -> None:
        self.settings = settings

    def info(self) -> RouteInfo:
        return INFO

    def availability(self) -> str | None:
        for module in ("torch", "diffusers", "huggingface_hub"):
            if importlib.util.find_spec(module) is None:
                return not_installed_message("local", module, "local")
        return None

    def device_and_version(self) -> tuple[str, str]:
        version = self.settings.local_version
        device = self.settings.local_device or "cuda"
        if version == "auto":
            version = "1.5"
        return device, version

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(INFO, request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        device, version = self.device_and_version()
        return estimate_local(
            audio.duration, version=version, device=device, gpu_hour_usd=self.settings.local_gpu_hour_usd
        )

    def execute(self, job: JobContext) -> RouteOutput:
        raise RouteError("the local route cannot run jobs yet", route="local")
