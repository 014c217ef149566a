"""The ``replicate`` route: ``bytedance/latentsync`` at a pinned version, driven by the official ``replicate``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import RouteError
from ..pricing import estimate_replicate
from ..types import CostEstimate, LipSyncRequest, MediaInfo
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

MODEL = "bytedance/latentsync"
#: The version id seen in Replicate's public example prediction for this community model (Jan-2025 schema:
#: video, audio, guidance_scale 0-10 default 1.0, seed). Creating by model name 404s for community models.
PINNED_VERSION = "637ce1919f807ca20da3a448ddc2743535d2853649574cd52a933120e9b9e293"

INFO = RouteInfo(
    name="replicate",
    description="Replicate community model bytedance/latentsync at a pinned version",
    owner="Replicate runs the model; ByteDance published it and owns the model",
    model=MODEL,
    model_version=PINNED_VERSION,
    billing_owner="the Replicate account that owns REPLICATE_API_TOKEN",
    uploads_media=True,
    upload_destination="Replicate files API (api.replicate.com/v1/files), private to the token's account",
    retention="API inputs, outputs and files are deleted after 1 hour; the output is downloaded at once",
    retention_days=1 / 24,
    deletion="uploaded files are deleted through the files API after the job; predictions expire after 1 h",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    max_input_bytes=100 * 1024 * 1024,
    max_audio_seconds=300.0,
    failure_billing="billed for the predict time used, also for failed and canceled predictions; "
    "aborted (never started) predictions are free",
    failure_billing_source="https://replicate.com/docs/topics/predictions/lifecycle",
    support_path=[
        "https://replicate.com/docs",
        "https://replicate.com/bytedance/latentsync",
        "https://github.com/bytedance/LatentSync/issues",
    ],
    credential_env="REPLICATE_API_TOKEN",
    install_extra="replicate",
    sources=[
        "https://replicate.com/bytedance/latentsync",
        "https://replicate.com/pricing",
        "https://replicate.com/docs/topics/predictions/data-retention",
    ],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=0.0, maximum=10.0, default=1.0),
        ParameterSpec(name="seed", kind="int"),
    ],
)


class ReplicateRoute:
    name: ClassVar[str] = "replicate"

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        self.settings = settings
        self.credential = credential
        self.version = settings.replicate_version or PINNED_VERSION

    def info(self) -> RouteInfo:
        return INFO.model_copy(update={"model_version": self.version})

    def availability(self) -> str | None:
        if not module_available("replicate"):
            return not_installed_message("replicate", "replicate", "replicate")
        if self.credential is None:
            return (
                "route 'replicate' needs REPLICATE_API_TOKEN (argument replicate_api_token=, env "
                "REPLICATE_API_TOKEN, or keyring service 'latentsync-routes')"
            )
        return None

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(self.info(), request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_replicate(audio.duration)

    def execute(self, job: JobContext) -> RouteOutput:
        raise RouteError("the replicate route cannot run jobs yet", route="replicate")
