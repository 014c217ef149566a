"""Run LatentSync lip-sync locally, on fal or on Replicate through one client.

The public API is re-exported here and loaded on first use (PEP 562), so ``import latentsync_routes`` stays
cheap; torch, fal-client and replicate load only when a route that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .async_client import AsyncJob, AsyncLipSyncClient
    from .batch.executor import StopSignal
    from .batch.manifest import BatchJob
    from .batch.report import BatchReport
    from .client import LipSyncClient
    from .config import PolicySettings, Settings, load_settings
    from .errors import (
        AmbiguousSubmit,
        AuthenticationError,
        BudgetExceeded,
        ConfigurationError,
        DeadlineExceeded,
        DownloadError,
        DummyCredentialRefused,
        InputError,
        InvalidConsent,
        InvalidParameter,
        JobAlreadyFailed,
        JobCancelled,
        JobFailed,
        JobStillRunning,
        LatentSyncError,
        LocalRouteError,
        ManifestError,
        MediaError,
        MediaLimitExceeded,
        MediaNotFound,
        MissingCredentials,
        MissingStream,
        NotAMediaFile,
        OutputGone,
        PolicyViolation,
        ProviderError,
        ProviderInputRejected,
        RouteError,
        RouteNotInstalled,
        SyncQualityFailed,
        SyncWeightsMissing,
        UnknownRoute,
        UnsupportedCodec,
        UnsupportedParameter,
        UnsupportedSource,
        WaitTimeout,
        WebhookRejected,
        WebhookReplayed,
        WebhookSignatureInvalid,
        WebhookStale,
        ZeroDuration,
    )
    from .handles import Job
    from .media import output_duration, output_frame_count, probe
    from .policy import CheckResult
    from .routes.base import Route, RouteInfo
    from .sync_record import SyncQuality
    from .types import (
        Attempt,
        Cost,
        CostEstimate,
        JobRecord,
        LipSyncRequest,
        LipSyncResult,
        MediaInfo,
        MediaSource,
    )

_EXPORTS: dict[str, str] = {
    "AmbiguousSubmit": "errors",
    "AsyncLipSyncClient": "async_client",
    "Attempt": "types",
    "AuthenticationError": "errors",
    "BatchJob": "batch.manifest",
    "BatchReport": "batch.report",
    "BudgetExceeded": "errors",
    "CheckResult": "policy",
    "ConfigurationError": "errors",
    "Cost": "types",
    "CostEstimate": "types",
    "DeadlineExceeded": "errors",
    "DownloadError": "errors",
    "DummyCredentialRefused": "errors",
    "InputError": "errors",
    "InvalidConsent": "errors",
    "InvalidParameter": "errors",
    "JobCancelled": "errors",
    "JobAlreadyFailed": "errors",
    "JobFailed": "errors",
    "JobStillRunning": "errors",
    "OutputGone": "errors",
    "JobRecord": "types",
    "ManifestError": "errors",
    "LatentSyncError": "errors",
    "LipSyncClient": "client",
    "LipSyncRequest": "types",
    "LipSyncResult": "types",
    "LocalRouteError": "errors",
    "MediaError": "errors",
    "MediaInfo": "types",
    "MediaLimitExceeded": "errors",
    "MediaNotFound": "errors",
    "MediaSource": "types",
    "MissingCredentials": "errors",
    "MissingStream": "errors",
    "NotAMediaFile": "errors",
    "PolicySettings": "config",
    "PolicyViolation": "errors",
    "ProviderError": "errors",
    "ProviderInputRejected": "errors",
    "Route": "routes.base",
    "RouteError": "errors",
    "RouteInfo": "routes.base",
    "RouteNotInstalled": "errors",
    "StopSignal": "batch.executor",
    "SyncQuality": "sync_record",
    "SyncQualityFailed": "errors",
    "SyncWeightsMissing": "errors",
    "Settings": "config",
    "UnknownRoute": "errors",
    "UnsupportedCodec": "errors",
    "UnsupportedParameter": "errors",
    "UnsupportedSource": "errors",
    "ZeroDuration": "errors",
    "AsyncJob": "async_client",
    "Job": "handles",
    "WaitTimeout": "errors",
    "WebhookRejected": "errors",
    "WebhookReplayed": "errors",
    "WebhookSignatureInvalid": "errors",
    "WebhookStale": "errors",
    "load_settings": "config",
    "output_duration": "media",
    "output_frame_count": "media",
    "probe": "media",
}

#: The public names: the keys of the one export table above.
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'latentsync_routes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
