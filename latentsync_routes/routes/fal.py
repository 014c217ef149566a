"""The ``fal`` route: ``fal-ai/latentsync`` on fal's queue, driven by the official ``fal-client``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import RouteError
from ..pricing import estimate_fal
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

ENDPOINT = "fal-ai/latentsync"

INFO = RouteInfo(
    name="fal",
    description="fal.ai hosted endpoint fal-ai/latentsync (queue API)",
    owner="fal (fal.ai) runs the endpoint; ByteDance owns the model",
    model=ENDPOINT,
    model_version=f"{ENDPOINT} (fal does not publish which LatentSync release it serves)",
    billing_owner="the fal account that owns FAL_KEY",
    uploads_media=True,
    upload_destination="fal CDN storage (v3.fal.media): public, unguessable URLs",
    retention="uploads and outputs on the fal CDN are public and kept at least 7 days unless an object "
    "lifecycle is set at upload (this route sets one when the policy caps retention); queue results 1 h",
    retention_days=None,
    deletion="expiry set at upload through X-Fal-Object-Lifecycle-Preference; no delete API is used",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="server errors (HTTP 5xx) are never charged; invalid inputs (422) may be charged if a "
    "runner spent GPU time; queue waiting is free",
    failure_billing_source="https://docs.fal.ai/faq",
    support_path=["https://docs.fal.ai", "https://fal.ai/support", "https://github.com/bytedance/LatentSync/issues"],
    credential_env="FAL_KEY",
    install_extra="fal",
    sources=["https://fal.ai/models/fal-ai/latentsync/llms.txt", "https://docs.fal.ai/faq"],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=1.0, maximum=2.0, default=1.0),
        ParameterSpec(name="seed", kind="int"),
        ParameterSpec(name="loop_mode", kind="str", choices=["pingpong", "loop"]),
    ],
)


class FalRoute:
    name: ClassVar[str] = "fal"

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        self.settings = settings
        self.credential = credential

    def info(self) -> RouteInfo:
        return INFO

    def availability(self) -> str | None:
        if not module_available("fal_client"):
            return not_installed_message("fal", "fal-client", "fal")
        if self.credential is None:
            return "route 'fal' needs FAL_KEY (argument fal_key=, env FAL_KEY, or keyring service 'latentsync-routes')"
        return None

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(INFO, request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_fal(audio.duration)

    def execute(self, job: JobContext) -> RouteOutput:
        raise RouteError("the fal route cannot run jobs yet", route="fal")
