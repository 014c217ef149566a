"""The Route protocol, the facts every route declares, and the registry.

A route is one folder (:mod:`latentsync_routes.routes`): a :class:`RouteInfo` (facts, with sources), a
parameter table, an estimator and ``execute``, with its kit. The client owns everything else (probing,
policy, budget, journal, records), so adding a route is one folder plus one line in the registry.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..errors import InvalidParameter, RouteNotInstalled, UnknownRoute, UnsupportedParameter
from ..money import total
from ..types import Attempt, CostEstimate, JobRecord, JobState, LipSyncRequest, MediaInfo
from . import REGISTRY
from .kit import RouteKit

if TYPE_CHECKING:
    from ..config import Credential, Settings


class ParameterSpec(BaseModel):
    """One parameter a route accepts, with its range; anything not listed is refused."""

    name: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] | None = None
    default: Any = None
    provider_name: str | None = None

    def check(self, value: Any, route: str) -> Any:
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidParameter(self.name, f"must be an integer, got {value!r}", route=route)
        if self.kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidParameter(self.name, f"must be a number, got {value!r}", route=route)
        if self.minimum is not None and value < self.minimum:
            raise InvalidParameter(self.name, f"{value!r} is below the minimum {self.minimum:g}", route=route)
        if self.maximum is not None and value > self.maximum:
            raise InvalidParameter(self.name, f"{value!r} is above the maximum {self.maximum:g}", route=route)
        if self.choices is not None and value not in self.choices:
            raise InvalidParameter(self.name, f"{value!r} is not one of {self.choices}", route=route)
        return value


class RouteInfo(BaseModel):
    """Facts a user needs before a face or a voice leaves the machine, each with where it came from."""

    name: str
    description: str
    owner: str
    model_owner: str = "ByteDance (official LatentSync code and weights)"
    model: str
    model_version: str
    billing_owner: str
    uploads_media: bool
    upload_destination: str
    retention: str
    retention_days: float | None
    #: how this route makes the provider keep files no longer than the policy's cap (None: it cannot)
    retention_control: str | None = None
    deletion: str
    code_licence: str = "Apache-2.0"
    weights_licence: str | None
    weights_licence_source: str | None = None
    commercial_use_allowed: bool | None = None
    max_input_bytes: int | None = None
    max_video_seconds: float | None = None
    max_audio_seconds: float | None = None
    failure_billing: str | None
    failure_billing_source: str | None = None
    support_path: list[str] = Field(default_factory=list)
    credential_env: str | None = None
    #: the provider SDK the route drives (import name, distribution name), if any
    sdk_module: str | None = None
    sdk_package: str | None = None
    #: the environment variable that points the route at another origin (a gateway, a fake), and its default
    base_url_env: str | None = None
    default_base_url: str | None = None
    #: jobs at once per client by default (a provider's own concurrency limit, or a GPU)
    default_concurrency: int = 4
    install_extra: str
    sources: list[str] = Field(default_factory=list)
    parameters: list[ParameterSpec] = Field(default_factory=list)


@dataclass
class RouteOutput:
    """What a route hands back to the client after ``execute``."""

    output_path: Path
    output_url: str | None = None
    provider_request_id: str | None = None
    actual_cost: float | None = None
    cost_basis: str = ""


ProgressCallback = Callable[[str, float | None], None]


class Submitted(Exception):  # noqa: N818 - a signal, not an error: the job is at the provider
    """Raised by a hosted route's ``execute`` with ``stop_after_submit``: the provider holds the job, whose
    request id is journalled; the caller hears back later (``Job.wait``, a webhook)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(request_id)
        self.request_id = request_id


@dataclass
class JobContext:
    """One job as a route sees it; ``mark`` and ``add_attempt`` write through to the journal."""

    record: JobRecord
    request: LipSyncRequest
    video_info: MediaInfo
    audio_info: MediaInfo
    output_path: Path
    settings: Settings
    credential: Credential | None
    deadline: float
    overwrite: bool = False
    progress: ProgressCallback | None = None
    persist: Callable[[JobRecord], None] = lambda record: None
    #: submit again after an ambiguous submit that no lookup resolved (a duplicate may be billed)
    force_resubmit: bool = False
    #: set from another thread (an awaiting task was cancelled); the journal flag is checked beside it
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_flag: Callable[[], bool] = lambda: False
    #: the journal's other jobs of this route (recent first): an ambiguous submit never adopts a request
    #: one of them holds
    others: Callable[[], list[JobRecord]] = lambda: []
    #: ``LipSyncClient.submit``: a hosted route stops once the provider holds the job (raising :class:`Submitted`)
    stop_after_submit: bool = False
    #: the provider's callback URL (``submit(..., webhook_url=...)``); each route passes its own field. Never
    #: in a repr: it may carry a token
    webhook_url: str | None = field(default=None, repr=False)
    _attempt_no: int = field(default=0, init=False)

    @property
    def job_id(self) -> str:
        return self.record.job_id

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cancel_requested(self) -> bool:
        """True once the caller cancelled this job (an async task, or ``cancel(job_id)`` from elsewhere)."""
        if not self.cancel_event.is_set() and self.cancel_flag():
            self.cancel_event.set()
        return self.cancel_event.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep between polls, never past the deadline, waking at once when the job is cancelled."""
        self.cancel_event.wait(max(0.0, min(seconds, self.remaining())))

    def mark(self, state: JobState | None = None, **updates: Any) -> None:
        """Update the record and persist it *before* the next step (request ids must survive a crash)."""
        for key, value in updates.items():
            setattr(self.record, key, value)
        if state is not None:
            self.record.state = state
        self.persist(self.record)

    def add_attempt(self, attempt: Attempt) -> None:
        self.record.attempts.append(attempt)
        if attempt.status == "error" and attempt.error_type:
            self.record.retry_reasons.append(f"{attempt.step}: {attempt.error_type}: {attempt.error_message}")
        self.record.cost.billed_failures = total(a.billed_amount for a in self.record.attempts if a.status == "error")
        self.persist(self.record)

    def next_attempt_number(self) -> int:
        self._attempt_no = len(self.record.attempts) + 1
        return self._attempt_no

    def report(self, message: str, fraction: float | None = None) -> None:
        if self.progress is not None:
            self.progress(message, fraction)


@runtime_checkable
class Route(Protocol):
    """What the client needs from a route."""

    name: ClassVar[str]

    def info(self) -> RouteInfo: ...

    def availability(self) -> str | None:
        """``None`` when usable, else what to install or set, in one sentence."""

    def sandbox(self) -> bool:
        """Whether jobs here are not real money (a hosted route pointed at a base-URL override)."""

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        """The provider's inputs for this request; unsupported parameters raise, never vanish."""

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate: ...

    def execute(self, job: JobContext) -> RouteOutput: ...

    def cancel_job(self, job: JobContext) -> str:
        """Cancel a job that nobody is running now (its provider job, if any); says what happened."""

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """For ``delete_job``: delete what the job left at the provider; (what was deleted, what was kept and
        why)."""

    def describe_choice(self) -> dict[str, Any] | None:
        """For ``doctor``: what the route would choose to run a job with now (device, version), or ``None``."""


def map_parameters(info: RouteInfo, request: LipSyncRequest) -> dict[str, Any]:
    """Check every given parameter against the route's table and rename it to the provider's name."""
    specs = {spec.name: spec for spec in info.parameters}
    mapped: dict[str, Any] = {}
    for name, value in request.given_parameters().items():
        spec = specs.get(name)
        if spec is None:
            supported = ", ".join(sorted(specs)) or "none"
            raise UnsupportedParameter(name, route=info.name, hint=f"it takes: {supported}")
        mapped[spec.provider_name or name] = spec.check(value, info.name)
    return mapped


def route_names() -> list[str]:
    return list(REGISTRY)


def route_kit(name: str) -> RouteKit:
    """The registry's kit for ``name``; an unknown name is refused with the known ones."""
    kit = REGISTRY.get(name)
    if kit is None:
        raise UnknownRoute(f"unknown route {name!r}; known routes: {', '.join(REGISTRY)}", route=name)
    return kit


def load_route_class(name: str) -> type[Any]:
    """Import a route's module on demand."""
    kit = route_kit(name)
    try:
        return kit.route_class()
    except ImportError as exc:  # pragma: no cover - only when a route's module itself is missing
        raise RouteNotInstalled(f"route {name!r} cannot be loaded: {exc}", route=name) from None


def route_info(name: str) -> RouteInfo:
    """A route's declared facts without building it (its module imports no provider SDK)."""
    info: RouteInfo = load_route_class(name).INFO
    return info


def create_route(name: str, settings: Settings, credential: Credential | None) -> Route:
    route: Route = load_route_class(name)(settings=settings, credential=credential)
    return route


def module_available(module: str) -> bool:
    """Whether an optional dependency can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


def not_installed_message(route: str, module: str, extra: str) -> str:
    return f"route {route!r} needs the {module!r} package: pip install 'latentsync-routes[{extra}]'"
