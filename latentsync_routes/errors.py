"""One exception tree for every route.

Callers catch by meaning, not by provider: a 422 from fal and an out-of-range value refused before any
upload are both an :class:`InputError`. Every error carries the route it happened on and, once a provider
has accepted a job, the provider request id, so a support ticket can always name the job. Each class also
carries the CLI exit code it maps to, so the CLI has no second table to keep in sync.

::

    LatentSyncError                      exit 1
    ├── ConfigurationError               exit 2   something to install or set before a run can start
    │   ├── UnknownRoute
    │   ├── RouteNotInstalled            names the extra to install
    │   ├── MissingCredentials           names the env var / keyring entry, never a value
    │   └── local.checkpoints.CheckpointError   CheckpointMissing / ChecksumMismatch /
    │                                    CheckpointDownloadFailed: name the file and the download command
    ├── InputError                       exit 2   refused before any upload or payment
    │   ├── MediaError
    │   │   ├── MediaNotFound            missing file, or a directory
    │   │   ├── NotAMediaFile
    │   │   ├── MissingStream            no video stream / no audio stream
    │   │   ├── ZeroDuration
    │   │   ├── UnsupportedCodec
    │   │   ├── UnsupportedSource        URL scheme, plain http to a non-loopback host
    │   │   └── MediaLimitExceeded       over a route's size or duration limit
    │   ├── UnsupportedParameter         a route does not take this parameter (never dropped silently)
    │   └── InvalidParameter             a value out of the route's range
    ├── PolicyViolation                  exit 3   one or more safety checks failed; lists them all
    ├── BudgetExceeded                   exit 5   the estimate is over a per-call or per-client cap
    └── RouteError                       exit 4   failures once a job may have reached a provider
        ├── AuthenticationError          401/403 (names FAL_KEY / REPLICATE_API_TOKEN)
        ├── ProviderInputRejected        the provider refused the inputs (fal 422, Replicate 422)
        ├── ProviderError                5xx, unexpected responses, exhausted retries
        ├── AmbiguousSubmit              a submit may or may not have created a job; never resubmitted
        ├── JobFailed                    the model ran and failed
        │   └── JobAlreadyFailed         a re-run of a job that failed at the provider (retry_failed)
        ├── JobCancelled
        ├── DeadlineExceeded             the wait ran out; the job was cancelled at the provider
        ├── DownloadError                the output could not be fetched or is not a playable video
        └── LocalRouteError              the local pipeline failed (missing face, out of memory, ...)

Secrets never appear in messages: the constructors take only what is safe to print.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LatentSyncError(Exception):
    """Base of every error raised by this package."""

    exit_code: int = 1
    #: the journalled job this error ended (set by the client once the job was claimed), for ``jobs show``
    job_id: str | None = None

    def __init__(self, message: str, *, route: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.route = route
        self.request_id = request_id

    def __str__(self) -> str:
        where = []
        if self.route:
            where.append(f"route={self.route}")
        if self.request_id:
            where.append(f"request_id={self.request_id}")
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form used by the CLI and the job record."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "route": self.route,
            "request_id": self.request_id,
            "job_id": self.job_id,
            "exit_code": self.exit_code,
        }


class ConfigurationError(LatentSyncError):
    exit_code = 2


class UnknownRoute(ConfigurationError):
    pass


class RouteNotInstalled(ConfigurationError):
    pass


class MissingCredentials(ConfigurationError):
    pass


class DummyCredentialRefused(ConfigurationError):
    """A dummy key of the built-in fakes would go to a real provider host: the base URL was not exported."""


class InputError(LatentSyncError):
    exit_code = 2


class InvalidConsent(InputError):
    """A consent text that is not one: no letters once control characters are removed, or too long."""


class MediaError(InputError):
    pass


class MediaNotFound(MediaError):
    pass


class NotAMediaFile(MediaError):
    pass


class MissingStream(MediaError):
    pass


class ZeroDuration(MediaError):
    pass


class UnsupportedCodec(MediaError):
    pass


class UnsupportedSource(MediaError):
    pass


class MediaLimitExceeded(MediaError):
    pass


class UnsupportedParameter(InputError):
    def __init__(self, parameter: str, *, route: str | None = None, hint: str = "") -> None:
        message = f"route {route!r} does not support parameter {parameter!r}"
        super().__init__(f"{message}; {hint}" if hint else message, route=route)
        self.parameter = parameter


class InvalidParameter(InputError):
    def __init__(self, parameter: str, message: str, *, route: str | None = None) -> None:
        super().__init__(f"{parameter}: {message}", route=route)
        self.parameter = parameter


class PolicyViolation(LatentSyncError):
    """Raised before anything leaves the machine; ``failures`` holds every failed check."""

    exit_code = 3

    def __init__(self, failures: Sequence[Any], *, route: str | None = None) -> None:
        lines = [f"{getattr(f, 'check', '?')}: {getattr(f, 'reason', f)}" for f in failures]
        super().__init__("policy stop: " + "; ".join(lines), route=route)
        self.failures = list(failures)


class BudgetExceeded(LatentSyncError):
    exit_code = 5

    def __init__(self, message: str, *, route: str | None = None, amount: float = 0.0, cap: float = 0.0) -> None:
        super().__init__(message, route=route)
        self.amount = amount
        self.cap = cap


class RouteError(LatentSyncError):
    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, route=route, request_id=request_id)
        self.status_code = status_code
        self.retryable = retryable


class AuthenticationError(RouteError):
    pass


class ProviderInputRejected(RouteError):
    def __init__(self, message: str, *, fields: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fields = list(fields)


class ProviderError(RouteError):
    pass


class AmbiguousSubmit(RouteError):
    pass


class JobFailed(RouteError):
    pass


class JobAlreadyFailed(JobFailed):
    """Running a job again whose provider job failed: a new paid job needs ``retry_failed=True``."""


class JobCancelled(RouteError):
    pass


class DeadlineExceeded(RouteError):
    pass


class DownloadError(RouteError):
    pass


class LocalRouteError(RouteError):
    pass
