"""The hosted-route template: the job's state machine once, provider calls as hooks.

A hosted route (fal, Replicate, ...) subclasses :class:`HostedRoute` and implements single tries of
``upload``, ``submit``, ``poll``, ``cancel`` and ``result`` (each raising
:class:`~latentsync_routes.retry.StepFailure` on a classified failure), and overrides the optional hooks
it needs; :attr:`HostedRoute.HOOKS` lists them all and docs/new-route.md says what each does and its
default. Everything that makes a job paid for once and never lost lives here:

* uploads are journalled as they happen (appended, never overwritten);
* ``submitting`` (with the provider inputs) is written *before* the submit leaves, and nothing is
  submitted once the deadline has passed;
* a submit is retried only when the provider cannot have accepted it; an ambiguous one is decided by
  time from the provider's listing (``lookup``, :mod:`.hosted_lookup`): adopted, submitted again once no
  request can have been created, or the job stops with :class:`AmbiguousSubmit` (worst case counted)
  until it can be decided or the caller passes ``force_resubmit``;
* a job that already has a provider request id is never submitted again: it is polled and fetched;
* the wait is bounded by the job's deadline, wakes at once on a cancel, and on either cancels the
  provider job, follows it to its end for a bounded time and records what it was billed;
* a provider job that ended badly is marked ``failed``/``cancelled`` here (terminal); every other
  failure leaves the job's state as it was, so running it again carries on the same provider job.

::

    created ─upload─▶ uploaded ─▶ submitting ─submit─▶ submitted ─poll─▶ completed ─fetch─▶ fetched
                                      │ ambiguous: lookup ▶ submitted, else stop (force_resubmit)
                                      └ provider said no: back to uploaded ─▶ failed
    submitted/completed ─provider failed / cancelled / deadline─▶ failed | cancelled
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from ..deadlines import deadline_scope
from ..dummy_keys import dummy_key_refusal
from ..errors import (
    AmbiguousSubmit,
    DeadlineExceeded,
    DeadlinePassed,
    DummyCredentialRefused,
    JobCancelled,
    JobFailed,
    LatentSyncError,
    MissingCredentials,
    ProviderInputRejected,
)
from ..retry import record_attempt, run_step
from ..types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource, utcnow
from .base import (
    JobContext,
    RouteInfo,
    RouteOutput,
    Submitted,
    map_parameters,
    module_available,
    not_installed_message,
)
from .hosted_endings import cancel_and_follow, ended_badly, stop
from .hosted_expiry import made
from .hosted_lookup import DEFAULT_SUBMIT_WINDOW_S, cancel_undecided
from .hosted_lookup import resolve as resolve_ambiguous
from .hosted_progress import progress_from_logs, wait_message
from .hosted_runs_on import fetched, outlive_deadline
from .hosted_status import CancelOutcome as CancelOutcome
from .hosted_status import Listed
from .hosted_status import Output as Output
from .hosted_status import Status as Status

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import Credential, Settings

#: A submit needs more than this many seconds left on the deadline, or it is not sent at all.
MIN_SUBMIT_SECONDS = 0.0
#: After a cancel, how long the provider job is followed to learn how it ended and what it billed.
CANCEL_FOLLOW_SECONDS = 10.0


class HostedRoute(ABC):
    """Base of every hosted route: the loop here, one try of each provider call in the subclass."""

    name: ClassVar[str]
    INFO: ClassVar[RouteInfo]
    #: the provider's input names for the uploaded video and audio
    INPUT_NAMES: ClassVar[tuple[str, str]] = ("video", "audio")
    #: whether the provider can cancel a job (if not, a job past its deadline is left to finish and resume)
    CAN_CANCEL: ClassVar[bool] = True
    #: whether ``result`` makes a request of its own (then its success is recorded as an attempt)
    RESULT_IS_A_REQUEST: ClassVar[bool] = True
    #: the hooks a route implements (abstract: required) or may override (with the defaults below); the one
    #: list, documented in docs/new-route.md (a test keeps the two equal)
    HOOKS: ClassVar[tuple[str, ...]] = (
        "estimate",
        "upload",
        "submit",
        "poll",
        "cancel",
        "result",
        "prepare",
        "lookup",
        "submit_bounds",
        "priced_after_download",
        "settle",
        "cleanup",
        "delete_remote",
        "output_lifetime",
        "describe_choice",
        "ambiguity_hint",
    )

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        self.settings = settings
        #: why the credential given was dropped (a fakes' dummy key bound for the real host), if it was
        self.credential_refused = dummy_key_refusal(self.INFO, settings, credential)
        self.credential = None if self.credential_refused else credential

    # -- facts -------------------------------------------------------------------------------------
    def info(self) -> RouteInfo:
        return self.INFO

    def availability(self) -> str | None:
        info = self.info()
        if self.credential_refused:
            return self.credential_refused
        if info.sdk_module and not module_available(info.sdk_module):
            return not_installed_message(self.name, info.sdk_package or info.sdk_module, info.install_extra)
        if self.credential is None and info.credential_env:
            return (
                f"route {self.name!r} needs {info.credential_env} (argument, env {info.credential_env}, or "
                "keyring service 'latentsync-routes')"
            )
        return None

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(self.info(), request)

    @abstractmethod
    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate: ...

    def sandbox(self) -> bool:
        """A base-URL override (a fake, a gateway under test) makes this route's jobs sandbox money."""
        return self.settings.base_url_override(self.name) is not None

    def base_url(self) -> str | None:
        """The origin this route talks to: a configured override (a gateway, a fake), else the default."""
        return self.settings.base_url_for(self.name)

    def secret(self) -> str:
        if self.credential_refused:
            raise DummyCredentialRefused(self.credential_refused, route=self.name)
        if self.credential is None:
            env = self.info().credential_env or "a credential"
            raise MissingCredentials(f"route {self.name!r} needs {env}", route=self.name)
        return self.credential.value.get_secret_value()

    # -- hooks: one try each -------------------------------------------------------------------------
    def prepare(self, job: JobContext, params: dict[str, Any]) -> None:
        """Checks that need the provider (a schema) and must pass before anything is uploaded."""
        return None

    @abstractmethod
    def upload(self, job: JobContext, source: MediaSource) -> str:
        """Upload one local input; its URL. Uploads create no job, so any transport failure is retryable."""

    @abstractmethod
    def submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        """Create the provider job; its request id. Retryable only if the provider cannot have accepted it;
        raise ``StepFailure(AmbiguousSubmit(...))`` when it may have."""

    def lookup(self, job: JobContext, inputs: dict[str, Any], start: datetime, end: datetime) -> list[Listed] | None:
        """The provider's requests of this endpoint sent between ``start`` and ``end`` (a route may also match
        ``inputs`` where the provider keeps them); ``None`` if the provider has no listing (then an ambiguous
        submit stays ambiguous, counted at its worst case, and the user decides)."""
        return None

    def submit_bounds(self, job: JobContext) -> tuple[float, float | None]:
        """Seconds the submit about to leave may be in flight, and seconds after that by which any request it
        created has surely ended and is listed (``None``: no such bound, so no listing proves a miss)."""
        return DEFAULT_SUBMIT_WINDOW_S, None

    @abstractmethod
    def poll(self, job: JobContext, request_id: str) -> Status: ...

    @abstractmethod
    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome:
        """Ask the provider to cancel (one try)."""

    @abstractmethod
    def result(self, job: JobContext, request_id: str, status: Status) -> Output: ...

    def priced_after_download(self, job: JobContext, output: Output, path: Path) -> tuple[float | None, str]:
        """The actual cost and its basis, once the output is on disk (a provider may price by its length).

        A route may also record the provider's raw usage figure and a disagreement on ``job.record.cost``.
        """
        return output.actual_cost, output.cost_basis

    def settle(self, job: JobContext, request_id: str, status: Status | None) -> tuple[float | None, str]:
        """What a provider job that ended badly (or was cancelled) was billed: (amount, basis); amount
        ``None`` when the provider has not said (then the worst case is recorded). Runs within the bounded
        follow-up after a cancel; a route may make one more request (fal reads the result's headers)."""
        if status is None or status.state in ("queued", "running"):  # not ended: what it costs is not known
            return None, f"{self.name} did not say how the job ended within {CANCEL_FOLLOW_SECONDS:g} s"
        return status.billed, status.billed_basis

    def cleanup(self, job: JobContext, *, provider_may_read_inputs: bool) -> None:
        """Delete what the job left at the provider (uploads), where the provider allows it."""
        return None

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """What ``delete_job`` deletes at the provider: (deleted, kept with why). By default nothing: the
        uploads are kept for the time ``RouteInfo.deletion`` states."""
        return [], [f"{uri}: {self.info().deletion}" for uri in record.uploaded_uris]

    def output_lifetime(self, job: JobContext) -> tuple[float, str] | None:
        """Seconds the provider keeps a made job's output after it ends, and why (the fact sheet); ``None``
        when not known (then a job asked for again is fetched again, and a miss is told as the provider's)."""
        return None

    def describe_choice(self) -> dict[str, Any] | None:
        """A hosted route chooses nothing on this machine."""
        return None

    def ambiguity_hint(self) -> str:
        """Where the user can see whether an ambiguous submit created a job."""
        return f"the {self.name} dashboard's request history"

    # -- the loop ------------------------------------------------------------------------------------
    def execute(self, job: JobContext) -> RouteOutput:
        with deadline_scope(job.deadline):
            return self._execute(job)

    def _execute(self, job: JobContext) -> RouteOutput:
        from ..download import download_output

        params = self.provider_parameters(job.request)
        self.prepare(job, params)
        request_id = job.record.provider_request_id
        try:
            if request_id is None and job.record.state == "submitting":
                request_id = resolve_ambiguous(self, job, "an earlier run stopped while its submit was in flight")
            if request_id is None:
                try:
                    uploaded = self._upload_inputs(job)
                except LatentSyncError as exc:
                    if job.remaining() > 0:
                        raise
                    raise DeadlineExceeded(
                        f"the job deadline passed during the uploads ({exc.message}); nothing "
                        f"was submitted to {self.name}",
                        route=self.name,
                    ) from None
                request_id = self._submit(job, {**uploaded, **params})
            else:
                job.report(f"{self.name}: carrying on request {request_id}", None)
            if job.stop_after_submit:
                raise Submitted(request_id)
            status = self._wait(job, request_id)
            try:
                output = run_step(
                    job,
                    "fetch",
                    partial(self.result, job, request_id, status),
                    request_id=request_id,
                    record_success=self.RESULT_IS_A_REQUEST,
                )
            except (ProviderInputRejected, JobFailed, JobCancelled) as exc:  # the provider job itself ended badly
                job.mark(
                    "cancelled" if isinstance(exc, JobCancelled) else "failed",
                    failure_reason=f"{type(exc).__name__}: {exc.message}",
                )
                raise
            job.report(f"{self.name}: downloading the output", None)
            path = download_output(
                job,
                output.url,
                route=self.name,
                request_id=output.request_id or request_id,
                file_name=output.file_name,
                headers=output.headers,
            )
        finally:
            may_read = job.record.state in ("submitting", "submitted")
            self.cleanup(job, provider_may_read_inputs=may_read)
        fetched(self, job)
        cost, basis = self.priced_after_download(job, output, path)
        job.report(f"{self.name}: done", 1.0)
        return RouteOutput(
            output_path=path, output_url=output.url, provider_request_id=request_id, actual_cost=cost, cost_basis=basis
        )

    def _upload_inputs(self, job: JobContext) -> dict[str, str]:
        urls: dict[str, str] = {}
        for input_name, role, source in zip(
            self.INPUT_NAMES, ("video", "audio"), (job.request.video, job.request.audio), strict=True
        ):
            if source.kind == "url":
                urls[input_name] = str(source.url)
                continue
            job.report(f"{self.name}: uploading the {role}", None)
            url = run_step(job, "upload", partial(self.upload, job, source))
            urls[input_name] = url
            if (
                url not in job.record.uploaded_uris
            ):  # journalled at once (by the route, or here), so it is deleted later
                job.mark(uploaded_uris=[*job.record.uploaded_uris, url])
        job.mark("uploaded")
        return urls

    def _submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        if job.remaining() <= MIN_SUBMIT_SECONDS:
            raise DeadlineExceeded(
                f"the job deadline passed before the submit; nothing was submitted to {self.name}", route=self.name
            )
        if job.cancel_requested():
            raise JobCancelled(f"cancelled before the submit; nothing was submitted to {self.name}", route=self.name)
        started = utcnow()
        in_flight, settles = self.submit_bounds(job)
        window_end = started + timedelta(seconds=in_flight)
        job.mark(
            "submitting",
            provider_inputs=inputs,
            submitting_at=started,
            interrupted=None,
            submit_window_end=window_end,
            submit_settles_at=None if settles is None else window_end + timedelta(seconds=settles),
        )
        try:
            request_id = run_step(job, "submit", partial(self.submit, job, inputs), record_success=False)
        except AmbiguousSubmit as exc:
            found = resolve_ambiguous(self, job, exc.message)
            if found is None:  # force_resubmit, and no lookup found it
                return self._submit(job, inputs)
            return found
        except LatentSyncError:
            job.mark("uploaded", provider_inputs=None)  # "not created": the provider said no, or was never reached
            raise
        job.mark("submitted", provider_request_id=request_id, submitted_at=utcnow())
        record_attempt(job, "submit", ok=True, started_at=started, request_id=request_id)
        job.report(f"{self.name}: submitted request {request_id}", None)
        return request_id

    def _wait(self, job: JobContext, request_id: str) -> Status:
        on_deadline = partial(stop, self, job, request_id, "deadline", CANCEL_FOLLOW_SECONDS)
        if not self.CAN_CANCEL:  # no cancel there: the job runs on, left resumable, never unreachable
            on_deadline = partial(outlive_deadline, self, job, request_id, CANCEL_FOLLOW_SECONDS)
        seen_logs = 0
        started = time.monotonic()
        expected = self._expected_seconds(job)
        while True:
            if job.cancel_requested():
                stop(self, job, request_id, "cancel", CANCEL_FOLLOW_SECONDS)
            if job.remaining() <= 0:
                on_deadline()
            try:
                status = run_step(
                    job,
                    "wait",
                    partial(self.poll, job, request_id),
                    request_id=request_id,
                    record_success=False,
                    on_deadline=on_deadline,
                )
            except DeadlinePassed:
                on_deadline()
            for line in status.logs[seen_logs:]:
                job.report(f"{self.name}: {line}", None)
            seen_logs = max(seen_logs, len(status.logs))
            if status.state in ("queued", "running"):
                own = status.fraction if status.fraction is not None else progress_from_logs(status.logs)
                job.report(
                    *wait_message(
                        self.name,
                        status.state,
                        elapsed=time.monotonic() - started,
                        expected=expected,
                        queue_position=status.queue_position,
                        provider_fraction=own,
                        detail=status.message,
                    )
                )
            if status.state == "succeeded":
                job.mark("completed", **made(self, job))
                return status
            if status.state in ("failed", "cancelled"):
                ended_badly(self, job, request_id, status, CANCEL_FOLLOW_SECONDS)
            job.sleep(self.settings.poll_interval)

    def _expected_seconds(self, job: JobContext) -> float | None:
        """The estimate's expected wall time for this job (for progress), if the estimator gives one."""
        try:
            return self.estimate(job.request, job.video_info, job.audio_info).expected_wall_seconds
        except Exception:  # noqa: BLE001 - progress is best effort; the estimate was checked before the run
            return None

    def cancel_and_follow(self, job: JobContext, request_id: str) -> tuple[str, Status | None]:
        """One cancel request, then polls until the provider job ends (at most ``CANCEL_FOLLOW_SECONDS``)."""
        return cancel_and_follow(self, job, request_id, follow_seconds=CANCEL_FOLLOW_SECONDS)

    def check_once(self, job: JobContext) -> str:
        """One poll (``Job.status``, a webhook) journalled as the wait loop would: ``completed``, or how it
        ended badly and what that was billed (raising that error). The provider's state."""
        request_id = job.record.provider_request_id
        if request_id is None:  # nothing at the provider to ask
            return job.record.state
        with deadline_scope(job.deadline):
            status = run_step(
                job, "wait", partial(self.poll, job, request_id), request_id=request_id, record_success=False
            )
            if status.state == "succeeded":
                job.mark("completed", **made(self, job))
            elif status.state in ("failed", "cancelled"):
                ended_badly(self, job, request_id, status, CANCEL_FOLLOW_SECONDS)
        return status.state

    def cancel_job(self, job: JobContext) -> str:
        """Cancel a job nobody is running now: its provider job if it has one, and mark it cancelled."""
        request_id = job.record.provider_request_id
        if request_id is None and job.record.state == "submitting":
            request_id, said = cancel_undecided(self, job)
            if request_id is None:
                return said
        if request_id is None:
            job.mark("cancelled", failure_reason="JobCancelled: cancelled before anything was submitted")
            return "nothing was submitted; nothing to cancel there"
        try:
            stop(self, job, request_id, "cancel", CANCEL_FOLLOW_SECONDS)
        except JobCancelled as exc:
            return exc.message
        raise AssertionError("unreachable")  # pragma: no cover
