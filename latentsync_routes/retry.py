"""The one retry policy the hosted routes use, for idempotent steps and for provably-unsent submits.

Why one loop and not the SDKs' own: fal-client retries every request (POSTs included) up to 10 times on
its own schedule and ignores ``Retry-After``; replicate's transport honours ``Retry-After`` without a cap
(a ``Retry-After: 3600`` sleeps an hour past any deadline). Neither knows the job's deadline, and neither
tells us what failed, so a job record could not show why it was slow or what a failure cost. The routes
therefore switch the SDK retries off (or never go through them) and every try of every step runs here:

* each failed try is recorded as an :class:`~latentsync_routes.types.Attempt` (with ``billed_amount``);
* ``Retry-After`` wins over the backoff; otherwise exponential backoff with jitter;
* tries stop at ``settings.max_attempts``, at ``settings.retry_max_seconds`` of retrying, and before a
  sleep would cross the job's deadline, whichever comes first;
* only failures classified ``retryable`` are retried. A route classifies a *submit* failure retryable only
  when the provider cannot have accepted the job (the connection was never made, or the provider answered
  with an HTTP error); a timeout or reset after the request left is ambiguous and is never retried here.

Routes translate provider/httpx exceptions into :class:`StepFailure` (the typed error to raise if the
loop gives up, plus how to retry); anything else propagates untouched.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from .errors import (
    AmbiguousSubmit,
    AuthenticationError,
    LatentSyncError,
    ProviderError,
    ProviderInputRejected,
    RouteError,
)
from .types import Attempt, utcnow

if TYPE_CHECKING:
    import httpx

    from .config import Settings
    from .routes.base import JobContext

T = TypeVar("T")
Step = Literal["probe", "upload", "submit", "wait", "fetch", "cancel", "run"]

#: First backoff step in seconds (doubled per try, plus up to as much jitter); tests shrink it.
BASE_DELAY_S = 0.2
#: HTTP statuses worth another try of an idempotent request (the provider said "not now").
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: How a step is named in messages ("HTTP 429 to the status poll").
STEP_NOUN = {
    "wait": "status poll",
    "fetch": "result fetch",
    "probe": "version lookup",
    "submit": "submit",
    "upload": "upload",
    "cancel": "cancel",
}


class StepFailure(Exception):
    """One failed try of one step, classified by the route.

    ``error`` is what the caller sees if the loop gives up; ``billed_amount`` is what this try cost (fal
    422s may be charged, Replicate failures are billed for their predict time).
    """

    def __init__(
        self,
        error: LatentSyncError,
        *,
        retryable: bool,
        retry_after: float | None = None,
        http_status: int | None = None,
        billed_amount: float = 0.0,
        error_type: str | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        self.http_status = http_status if http_status is not None else getattr(error, "status_code", None)
        self.billed_amount = billed_amount
        self.error_type = error_type or type(error).__name__


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds and backoff of the loop; built from :class:`Settings` by the routes."""

    max_attempts: int = 5
    max_seconds: float = 120.0
    base_delay: float = 0.2
    max_delay: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=max(1, settings.max_attempts),
            max_seconds=max(0.0, settings.retry_max_seconds),
            base_delay=BASE_DELAY_S,
        )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(frozen=True)
class ErrorAnswer:
    """A provider's HTTP error answer, read from its own body format by the route (the facts only)."""

    status: int
    #: the provider's words, already short and on one line
    detail: str
    request_id: str | None = None
    retry_after: float | None = None
    #: the provider says these inputs are invalid (fal's 400 with a field list, WaveSpeed's 400/413)
    input_rejected: bool = False
    fields: list[str] = field(default_factory=list)
    #: what this answer was billed (fal may bill a 422), and a clause saying so
    billed_amount: float = 0.0
    billing_note: str = ""
    error_type: str | None = None


def classify_http(answer: ErrorAnswer, *, route: str, provider: str, step: str, credential_name: str) -> StepFailure:
    """The one mapping of an HTTP error answer to the error tree and the retry rule, for every hosted route.

    401/403: the credential (never retried). 422, or what the provider marks as invalid inputs: rejected
    (never retried; nothing to gain). A 5xx to a submit: ambiguous (a gateway may answer so after the
    provider accepted it). Else retried only for :data:`TRANSIENT_STATUSES`, honouring Retry-After.
    """
    status, rid = answer.status, answer.request_id
    what = STEP_NOUN.get(step, step)
    if status in (401, 403):
        text = f"{provider} refused the credential in {credential_name} (HTTP {status}); check that the key is valid"
        error: LatentSyncError = AuthenticationError(
            f"{text} and not revoked", route=route, request_id=rid, status_code=status
        )
        return StepFailure(error, retryable=False)
    if status == 422 or answer.input_rejected:
        text = f"{'inputs' if step == 'submit' or status == 422 else what} (HTTP {status}): {answer.detail}"
        error = ProviderInputRejected(
            f"{provider} rejected the {text}{answer.billing_note}",
            fields=answer.fields,
            route=route,
            request_id=rid,
            status_code=status,
        )
        return StepFailure(error, retryable=False, billed_amount=answer.billed_amount, error_type=answer.error_type)
    if step == "submit" and status >= 500:
        text = f"HTTP {status}, which a gateway may send after {provider} accepted it ({answer.detail})"
        error = AmbiguousSubmit(
            f"the submit to {provider} may or may not have created a job: {text}",
            route=route,
            request_id=rid,
            status_code=status,
        )
        return StepFailure(error, retryable=False)
    retryable = status in TRANSIENT_STATUSES
    kind = f" ({answer.error_type})" if answer.error_type else ""
    text = f"{provider} answered HTTP {status} to the {what}{kind}: {answer.detail}{answer.billing_note}"
    error = ProviderError(text, route=route, request_id=rid, status_code=status, retryable=retryable)
    return StepFailure(
        error,
        retryable=retryable,
        retry_after=answer.retry_after,
        billed_amount=answer.billed_amount,
        error_type=answer.error_type,
    )


def retry_after_of(response: httpx.Response | None) -> float | None:
    return parse_retry_after(response.headers.get("retry-after")) if response is not None else None


def request_timeout(job: JobContext, seconds: float) -> httpx.Timeout:
    """A per-request timeout that never outlives the job's deadline (but allows at least a second)."""
    import httpx

    limit = min(seconds, max(1.0, job.remaining()))
    return httpx.Timeout(limit, connect=min(10.0, limit))


def json_or_none(response: httpx.Response | None) -> Any:
    """The JSON body of an (already read) response, or ``None`` when there is none or it is not JSON."""
    if response is None:
        return None
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def request_never_sent(exc: BaseException) -> bool:
    """True when an httpx failure happened before any byte of the request could reach the provider."""
    import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol))


class _Budget:
    """tenacity stop condition: attempts, retry seconds, and the job deadline (checked *with* the sleep)."""

    def __init__(self, policy: RetryPolicy, deadline: float | None) -> None:
        self.policy = policy
        self.deadline = deadline
        self.started = time.monotonic()
        self.reason = ""
        self.hit_deadline = False

    def __call__(self, state: RetryCallState) -> bool:
        now = time.monotonic()
        if state.attempt_number >= self.policy.max_attempts:
            self.reason = f"after {state.attempt_number} tries (max_attempts={self.policy.max_attempts})"
            return True
        if now - self.started + state.upcoming_sleep > self.policy.max_seconds:
            self.reason = (
                f"after {state.attempt_number} tries: waiting {state.upcoming_sleep:.1f} s more would pass "
                f"retry_max_seconds={self.policy.max_seconds:g}"
            )
            return True
        if self.deadline is not None and now + state.upcoming_sleep >= self.deadline:
            self.reason = f"after {state.attempt_number} tries: the next try would be past the job deadline"
            self.hit_deadline = True
            return True
        return False


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, StepFailure) and exc.retry_after is not None:
            return exc.retry_after  # the provider said when; the budget decides whether we can afford it
        exponential = policy.base_delay * 2 ** (state.attempt_number - 1)
        return float(min(policy.max_delay, exponential + random.uniform(0, policy.base_delay)))  # full jitter on top

    return wait


def run_step(
    job: JobContext,
    step: Step,
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy | None = None,
    request_id: str | None = None,
    record_success: bool = True,
    deadline: float | None = None,
    on_deadline: Callable[[], NoReturn] | None = None,
) -> T:
    """Run one step with retries; record every failed try (and the success) as an Attempt on the job.

    ``attempt`` does one try and raises :class:`StepFailure` on a classified failure. If the loop gives
    up, the last failure's typed error is raised (with how many tries were made), except when it gave up
    because the job's deadline came: then ``on_deadline`` runs (a route cancels the job there and raises
    :class:`~latentsync_routes.errors.DeadlineExceeded`).
    """
    policy = policy or RetryPolicy.from_settings(job.settings)
    budget = _Budget(policy, job.deadline if deadline is None else deadline)
    retrying = Retrying(
        stop=budget,
        wait=_wait(policy),
        retry=retry_if_exception(lambda exc: isinstance(exc, StepFailure) and exc.retryable),
        reraise=True,
    )
    try:
        return retrying(_recorded(job, step, attempt, request_id=request_id, record_success=record_success))
    except StepFailure as failure:
        if failure.retryable and budget.hit_deadline and on_deadline is not None:
            on_deadline()
        raise _given_up(failure, budget) from None


def _recorded(
    job: JobContext, step: Step, attempt: Callable[[], T], *, request_id: str | None, record_success: bool
) -> Callable[[], T]:
    """``attempt`` with every failed try (and, if asked, the success) recorded on the job as an Attempt."""

    def one_try() -> T:
        started = utcnow()
        try:
            value = attempt()
        except StepFailure as failure:
            job.add_attempt(
                Attempt(
                    number=job.next_attempt_number(),
                    step=step,
                    status="error",
                    started_at=started,
                    ended_at=utcnow(),
                    error_type=failure.error_type,
                    error_message=failure.error.message[:500],
                    retryable=failure.retryable,
                    http_status=failure.http_status,
                    provider_request_id=failure.error.request_id or request_id,
                    billed_amount=failure.billed_amount,
                )
            )
            raise
        if record_success:
            job.add_attempt(
                Attempt(
                    number=job.next_attempt_number(),
                    step=step,
                    status="ok",
                    started_at=started,
                    ended_at=utcnow(),
                    provider_request_id=request_id,
                )
            )
        return value

    return one_try


def _given_up(failure: StepFailure, budget: _Budget) -> LatentSyncError:
    """The typed error the caller sees when the loop stops: the last failure's, saying why retrying stopped."""
    error = failure.error
    if failure.retryable and budget.reason:
        error.message = f"{error.message}; gave up {budget.reason}"
        error.args = (error.message,)
        if isinstance(error, RouteError):
            error.retryable = True
    return error


def record_attempt(
    job: JobContext,
    step: Step,
    *,
    ok: bool,
    started_at: datetime | None = None,
    error: LatentSyncError | None = None,
    http_status: int | None = None,
    request_id: str | None = None,
    billed_amount: float = 0.0,
) -> None:
    """Record a try that did not go through :func:`run_step` (a cancel, a terminal provider outcome)."""
    job.add_attempt(
        Attempt(
            number=job.next_attempt_number(),
            step=step,
            status="ok" if ok else "error",
            started_at=started_at or utcnow(),
            ended_at=utcnow(),
            error_type=type(error).__name__ if error is not None else None,
            error_message=error.message[:500] if error is not None else None,
            http_status=http_status if http_status is not None else getattr(error, "status_code", None),
            provider_request_id=request_id,
            billed_amount=billed_amount,
        )
    )
