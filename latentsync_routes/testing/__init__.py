"""Offline stand-ins for the hosted LatentSync providers, for testing apps built on this SDK.

``FakeFal`` and ``FakeReplicate`` are real HTTP servers on ``127.0.0.1`` that
speak the fal queue/storage/CDN protocol and the Replicate API closely enough
that the unmodified ``fal-client`` and ``replicate`` packages drive them, with
their own retries, timeouts and URL handling. Each fake keeps a request log,
counts the provider jobs it created (what a real account would be billed for),
and takes per-endpoint :class:`Fault` queues to reproduce production failures.

Example::

    from latentsync_routes.testing import FakeFal, Fault

    with FakeFal(expected_key="test-key") as fal, fal.patch_fal_client():
        fal.faults.submit.append(Fault.status(429))
        ...  # run your code with fal_client.SyncClient(key="test-key")
        assert len(fal.jobs) == 1
        assert len(fal.requests_for("submit")) == 2  # the 429 was retried

For the local route, :mod:`latentsync_routes.testing.tiny_local` builds tiny random-weight models and
registers them with the route, so it runs end to end offline without checkpoints. It needs the ``local``
extra (torch), so it is not imported here: import it by name.

Importing this package does not import ``fal_client``, ``replicate`` or ``torch``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._faults import Fault
from ._http import FakeServer
from ._storage import StoredFile
from ._wire import Headers, RequestRecord
from .media import write_test_audio, write_test_video

if TYPE_CHECKING:
    from ..routes.fal.fake import CancelRecord, FakeFal, FalFailure, FalFaults, FalJob
    from ..routes.replicate.fake import FakeReplicate, ReplicateFaults, ReplicatePrediction
    from ..routes.replicate.fake_api import LATENTSYNC_VERSIONS, ReplicateVersion
    from ..routes.replicate.fake_schemas import (
        LATENTSYNC_INPUT_SCHEMA_2025_01,
        LATENTSYNC_INPUT_SCHEMA_CURRENT,
        LATENTSYNC_VERSION_2025_01,
        LATENTSYNC_VERSION_CURRENT,
    )
    from ..routes.wavespeed.fake import FakeWaveSpeed, WaveSpeedFaults, WaveSpeedPrediction

#: Each route's fake lives in its own folder (``routes/<name>/fake.py``); these names stay importable
#: from here, loaded on first use (the fakes import this package's plumbing, so they cannot be imported
#: eagerly from it).
_FROM_ROUTES = {
    **dict.fromkeys(("CancelRecord", "FakeFal", "FalFailure", "FalFaults", "FalJob"), "fal.fake"),
    **dict.fromkeys(("FakeReplicate", "ReplicateFaults", "ReplicatePrediction"), "replicate.fake"),
    **dict.fromkeys(("ReplicateVersion", "LATENTSYNC_VERSIONS"), "replicate.fake_api"),
    **dict.fromkeys(
        (
            "LATENTSYNC_INPUT_SCHEMA_2025_01",
            "LATENTSYNC_INPUT_SCHEMA_CURRENT",
            "LATENTSYNC_VERSION_2025_01",
            "LATENTSYNC_VERSION_CURRENT",
        ),
        "replicate.fake_schemas",
    ),
    **dict.fromkeys(("FakeWaveSpeed", "WaveSpeedFaults", "WaveSpeedPrediction"), "wavespeed.fake"),
}


def __getattr__(name: str) -> Any:
    module = _FROM_ROUTES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"latentsync_routes.routes.{module}"), name)


__all__ = [
    "FakeWaveSpeed",
    "WaveSpeedFaults",
    "WaveSpeedPrediction",
    "write_test_audio",
    "write_test_video",
    "LATENTSYNC_INPUT_SCHEMA_2025_01",
    "LATENTSYNC_INPUT_SCHEMA_CURRENT",
    "LATENTSYNC_VERSIONS",
    "LATENTSYNC_VERSION_2025_01",
    "LATENTSYNC_VERSION_CURRENT",
    "CancelRecord",
    "FakeFal",
    "FakeReplicate",
    "FakeServer",
    "FalFailure",
    "FalFaults",
    "FalJob",
    "Fault",
    "Headers",
    "ReplicateFaults",
    "ReplicatePrediction",
    "ReplicateVersion",
    "RequestRecord",
    "StoredFile",
]
