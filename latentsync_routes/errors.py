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
    │   ├── DummyCredentialRefused       a fake's dummy key would go to a real provider host
    │   ├── InvalidSettings              a setting it cannot take (also a ValueError), named by its variable
    │   ├── JournalError                 the journal file is damaged, not a database, or not writable
    │   └── SyncWeightsMissing           evaluate/min_sync_confidence without usable SyncNet weights
    ├── InputError                       exit 2   refused before any upload or payment
    │   ├── MediaError
    │   │   ├── MediaNotFound            missing file, or a directory
    │   │   ├── NotAMediaFile
    │   │   ├── MissingStream            no video stream / no audio stream
    │   │   ├── ZeroDuration
    │   │   ├── UnsupportedCodec
    │   │   ├── UnsupportedSource        URL scheme, plain http to a non-loopback host
    │   │   └── MediaLimitExceeded       over a route's size or duration limit
    │   ├── InvalidConsent               a consent text that is not one (no letters, or too long)
    │   ├── UnsupportedParameter         a route does not take this parameter (never dropped silently)
    │   ├── InvalidParameter             a value out of the route's range
    │   ├── InvalidConsent               a consent text that is not one (control characters only, too long)
    │   └── ManifestError                a batch manifest's bad rows, each named by its line (exit 2 or 3)
    ├── PolicyViolation                  exit 3   one or more safety checks failed; lists them all
    ├── BudgetExceeded                   exit 5   the estimate is over a per-call or per-client cap
    ├── NotStarted                       exit 4   a batch stopped before this job started
    ├── SyncQualityFailed                exit 4   the output's LSE-C is under min_sync_confidence (paid, kept)
    ├── WebhookRejected                  exit 2   a provider delivery refused before anything was recorded
    │   ├── WebhookSignatureInvalid      forged, tampered, wrong key or secret, headers missing
    │   ├── WebhookStale                 signed outside the provider's timestamp window
    │   └── WebhookReplayed              a delivery already handled came again
    └── RouteError                       exit 4   failures once a job may have reached a provider
        ├── AuthenticationError          401/403 (names the route's credential variable)
        ├── ProviderInputRejected        the provider refused the inputs (fal 422, Replicate 422)
        ├── ProviderError                5xx, unexpected responses, exhausted retries
        ├── AmbiguousSubmit              a submit may or may not have created a job; never resubmitted
        ├── JobFailed                    the model ran and failed
        │   └── JobAlreadyFailed         a re-run of a job that failed at the provider (retry_failed)
        ├── OutputGone                   a paid job's output is deleted or expired: told from the record
        ├── JobStillRunning              ``jobs delete`` of a job another caller runs, or whose provider job runs
        ├── JobCancelled
        ├── JournalBusy                  another process held the journal's lock too long; run again
        ├── ClaimLost                    another caller took the job over after this one's lease ran out
        ├── ClaimTimeout                 another live caller held the job longer than we would wait
        ├── DeadlineExceeded             the wait ran out; the job was cancelled at the provider
        │   └── DeadlinePassed           a request not sent because the job's deadline had passed
        ├── DownloadError                the output could not be fetched or is not a playable video
        ├── WaitTimeout                  ``Job.wait(timeout)`` ran out; the job keeps running (a TimeoutError)
        └── LocalRouteError              the local pipeline failed (missing face, out of memory, ...)
            └── WorkerLost               a Ray actor died mid-job; the job runs again on another

``local/`` keeps a tree of its own (``local.errors.LocalError``: ``CheckpointError`` and its kinds,
``ModuleMissing``, ``MissingFace``), knowing nothing of routes; the local route translates it into this one
(a checkpoint to download is a ``ConfigurationError``, exit 2).

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
    """Something to install or set before a run can start (exit 2); the message names what."""

    exit_code = 2


class UnknownRoute(ConfigurationError):
    """A route name that no registered route answers to; the message lists the known names."""


class RouteNotInstalled(ConfigurationError):
    """The route's optional packages are missing; the message holds the ``pip install`` line."""


class MissingCredentials(ConfigurationError):
    """No key for a hosted route; names the variable or keyring entry to set, never a value."""


class DummyCredentialRefused(ConfigurationError):
    """A dummy key of the built-in fakes would go to a real provider host: the base URL was not exported."""


class InvalidSettings(ConfigurationError, ValueError):
    """A setting with a value it cannot take; also a ``ValueError``, which ``load_settings`` used to raise."""


class JournalError(ConfigurationError):
    """The journal file cannot be used: damaged, not a database, no permission, or a filesystem without WAL."""


class SyncWeightsMissing(ConfigurationError):
    """Scoring was asked for (``evaluate``, ``min_sync_confidence``) and no usable SyncNet weights are here;
    raised before anything is uploaded or paid. The message names ``latentsync-routes download --syncnet``."""


class InputError(LatentSyncError):
    """Inputs refused before any upload or payment (exit 2): nothing was sent, nothing was paid."""

    exit_code = 2


class InvalidConsent(InputError):
    """A consent text that is not one: no letters once control characters are removed, or too long."""


class MediaError(InputError):
    """A video or audio input that cannot be used as given."""


class MediaNotFound(MediaError):
    """The path names no file (or names a folder)."""


class NotAMediaFile(MediaError):
    """The file opened, but PyAV found no media in it."""


class MissingStream(MediaError):
    """The video has no video stream, or the audio has no audio stream."""


class ZeroDuration(MediaError):
    """A stream with no length: there is nothing to lip-sync."""


class UnsupportedCodec(MediaError):
    """A codec the route cannot read; re-encode the file (e.g. to H.264 / AAC) and run again."""


class UnsupportedSource(MediaError):
    """A source the package will not fetch: an unknown URL scheme, or plain http to a remote host."""


class MediaLimitExceeded(MediaError):
    """Over a route's documented size or duration limit, refused here rather than billed there."""


class UnsupportedParameter(InputError):
    """A parameter this route does not take: refused, never dropped silently."""

    def __init__(self, parameter: str, *, route: str | None = None, hint: str = "") -> None:
        message = f"route {route!r} does not support parameter {parameter!r}"
        super().__init__(f"{message}; {hint}" if hint else message, route=route)
        self.parameter = parameter


class InvalidParameter(InputError):
    """A parameter value outside the route's accepted range."""

    def __init__(self, parameter: str, message: str, *, route: str | None = None) -> None:
        super().__init__(f"{parameter}: {message}", route=route)
        self.parameter = parameter


class ManifestError(InputError):
    """The manifest cannot be run as written; ``problems`` lists ``(line, message)`` for each bad row."""

    def __init__(self, problems: list[tuple[int, str]], *, exit_code: int = 2) -> None:
        shown = "; ".join(f"line {line}: {message}" for line, message in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} bad row(s) in the manifest, nothing was run: {shown}{more}")
        self.problems = problems
        self.exit_code = exit_code

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": [{"line": line, "message": m} for line, m in self.problems]}


class PolicyViolation(LatentSyncError):
    """Raised before anything leaves the machine; ``failures`` holds every failed check."""

    exit_code = 3

    def __init__(self, failures: Sequence[Any], *, route: str | None = None) -> None:
        lines = [f"{getattr(f, 'check', '?')}: {getattr(f, 'reason', f)}" for f in failures]
        super().__init__("policy stop: " + "; ".join(lines), route=route)
        self.failures = list(failures)


class BudgetExceeded(LatentSyncError):
    """The estimate is over a per-call, per-client or period cap (exit 5); nothing was started."""

    exit_code = 5

    def __init__(self, message: str, *, route: str | None = None, amount: float = 0.0, cap: float = 0.0) -> None:
        super().__init__(message, route=route)
        self.amount = amount
        self.cap = cap


class RouteError(LatentSyncError):
    """A failure once a job may have reached a provider (exit 4); names the request id when known."""

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
    """The provider refused the key (401/403); names the variable that holds it."""


class ProviderInputRejected(RouteError):
    """The provider refused the inputs after upload (fal or Replicate 422); ``fields`` names them."""

    def __init__(self, message: str, *, fields: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fields = list(fields)


class ProviderError(RouteError):
    """A 5xx, an unexpected response, or retries exhausted at the provider."""


class AmbiguousSubmit(RouteError):
    """A submit may or may not have created a job: looked up, never sent again blindly."""


class JobFailed(RouteError):
    """The model ran at the provider (or locally) and reported a failure."""


class JobAlreadyFailed(JobFailed):
    """Running a job again whose provider job failed: a new paid job needs ``retry_failed=True``."""


class OutputGone(RouteError):
    """A finished, paid job asked for again whose output is no longer anywhere: deleted on request
    (``jobs delete``) or by the provider's lifecycle (the fact sheet's retention), and not on this machine.

    Told from the journal's record before any request, never as the provider's 404; the job stays
    ``fetched`` (or ``completed``) and paid. ``new_job=True`` / ``--new-job`` pays for a new job.
    ``reason`` is ``"deleted"``, ``"expired"`` or ``"gone"`` (asked again, the provider said it has none).
    """

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class JobStillRunning(RouteError):
    """``jobs delete`` of a job that is still running: another caller holds it, or its provider job has not
    ended. Deleting then would leave a paid output unrecorded or unreachable, so nothing is deleted."""


class JobCancelled(RouteError):
    """The job was cancelled (by ``jobs cancel``, Ctrl-C or the provider) before it finished."""


class JournalBusy(RouteError):
    """Another process held the journal's write lock for longer than the busy timeout; nothing was lost.

    Transient: the same command run again carries on where this one stopped (a claimed job is resumable).
    """


class ClaimLost(RouteError):
    """This process no longer owns the job: its lease ran out and another caller took the job over."""


class ClaimTimeout(RouteError):
    """Another live caller has held this job longer than we were willing to wait."""


class NotStarted(LatentSyncError):
    """The batch was stopped before this job was started; running the batch again starts it."""

    exit_code = 4


class DeadlineExceeded(RouteError):
    """The wait ran out; the job was cancelled at the provider, whose request id the error names."""


class DeadlinePassed(DeadlineExceeded):
    """Raised by :class:`DeadlineTransport` instead of sending a request once the deadline has passed."""


class DownloadError(RouteError):
    """The output could not be fetched, or what came back is not a playable video."""


class LocalRouteError(RouteError):
    """The local pipeline failed (no face found, out of memory, ...)."""


class WorkerLost(LocalRouteError):
    """The Ray actor running this work died before it answered; the work is run again on another one."""


class WaitTimeout(RouteError, TimeoutError):
    """``Job.wait(timeout=...)`` ran out of the caller's patience; the job keeps running at the provider."""


class SyncQualityFailed(LatentSyncError):
    """The job ran, was paid for and its output was fetched, but its lip-sync scored under the gate.

    ``result`` is the job's result (output path, cost, record, ``sync_scores``): nothing is deleted, the
    record keeps the cost and marks the job ``failed-quality``. It is a :class:`~.types.LipSyncResult`, typed
    loosely here: the exceptions are the package's lowest layer, and the result types raise them.
    """

    exit_code = 4

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message, route=result.route, request_id=result.provider_request_id)
        self.result = result
        self.job_id = result.job_id

    def to_dict(self) -> dict[str, Any]:
        found = super().to_dict()
        scores = self.result.sync_scores
        found["sync_scores"] = scores.model_dump(mode="json") if scores is not None else None
        found["output_path"] = str(self.result.output_path) if self.result.output_path else None
        return found


class WebhookRejected(LatentSyncError):
    """A delivery to the provider callback was refused before anything was read from it or recorded."""

    exit_code = 2


class WebhookSignatureInvalid(WebhookRejected):
    """No valid signature of the provider's (forged, tampered, wrong key or secret, missing headers)."""


class WebhookStale(WebhookRejected):
    """The delivery's signed timestamp is outside the provider's tolerance (a replay of an old delivery)."""


class WebhookReplayed(WebhookRejected):
    """A delivery already handled came again (its id seen): nothing is done twice."""
