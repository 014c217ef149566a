"""One job, made once and then run: :class:`PreparedJob` and :class:`JobRunner`.

A :class:`PreparedJob` is everything decided before anything leaves the machine: the request, the probed
inputs, the checklist and the estimate, the idempotency key and the output place. The facade
(``LipSyncClient``) makes it once; the route choice, batches, the async client and the page hand the same
object to the same :class:`JobRunner`.

The runner owns the rest of a job's life: it claims the job in the journal (so identical calls, in
threads or processes, make one provider job), decides what the claimed job needs (nothing, a re-run, a
carry-on of its provider job), executes it on its route and journals how it ended. Everything it writes,
it writes as the claim's owner, so two callers can never both drive one job. It knows nothing of the
facade: it is given the settings, the journal and a way to find a route's credential.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ClaimLost, DeadlineExceeded, JobAlreadyFailed, JobCancelled, LatentSyncError, RouteError
from .job_truth import gone_reason, guarded, output_gone, output_here, start_new_job, was_fetched
from .journal import TERMINAL_BAD, TERMINAL_OK, Claim, Journal
from .journal_db import set_webhook_url, webhook_url_of
from .outputs import check_free
from .records import append_jsonl, new_record, request_from_record, result_from_record
from .redact import hide_webhook_urls_in_logs
from .routes.base import JobContext, ProgressCallback, Route, Submitted
from .types import PROVIDER_STATES, CostEstimate, JobRecord, LipSyncRequest, LipSyncResult, MediaInfo, utcnow

if TYPE_CHECKING:
    from .budget import BudgetCap
    from .config import Credential, Settings
    from .policy import CheckResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobInputs:
    """What a job runs on: the request and its two probed inputs."""

    request: LipSyncRequest
    video: MediaInfo
    audio: MediaInfo

    @classmethod
    def from_record(cls, record: JobRecord, *, need_inputs: bool) -> JobInputs:
        return cls(*request_from_record(record, need_inputs=need_inputs))


@dataclass(frozen=True)
class PreparedJob:
    """A job made once, checked and priced, before anything leaves the machine."""

    route: Route
    inputs: JobInputs
    checks: list[CheckResult]
    estimate: CostEstimate
    idempotency_key: str
    output_path: Path
    consent: str | None
    #: seconds the job may take from the moment it is driven
    deadline: float
    #: the route is pointed away from the provider (a base-URL override): its money is kept apart
    sandbox: bool = False

    def new_record(self) -> JobRecord:
        """The journal's first record of this job (written only when it is first claimed)."""
        inputs = self.inputs
        return new_record(
            self.route.info(),
            inputs.request,
            self.idempotency_key,
            self.consent,
            self.checks,
            self.estimate,
            inputs.video,
            inputs.audio,
            self.output_path,
            sandbox=self.sandbox,
        )


@dataclass(frozen=True)
class RunControls:
    """How one call drives its job; none of it changes the job's identity."""

    progress: ProgressCallback | None = None
    #: pay for a new provider job when the job's last one failed
    retry_failed: bool = False
    #: submit again after an ambiguous submit that no lookup resolved (a duplicate may be billed)
    force_resubmit: bool = False
    #: replace a file at the output that is not this job's own
    overwrite: bool = False
    cancel_event: threading.Event | None = None
    #: stop once the provider holds the job (``submit``); a route that cannot stop there runs it to the end
    submit_only: bool = False
    #: the provider's callback URL for this job's submit (https, or http to a loopback host); never in a
    #: repr: it may carry a token
    webhook_url: str | None = field(default=None, repr=False)
    #: pay for a new job when the journal's job cannot give its output (deleted, expired) or failed
    new_job: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunControls:
        """The controls among ``run``'s keyword options (``RunOptions``)."""
        return cls(
            progress=options.get("progress"),
            retry_failed=bool(options.get("retry_failed", False)),
            force_resubmit=bool(options.get("force_resubmit", False)),
            overwrite=bool(options.get("overwrite", False)),
            cancel_event=options.get("cancel_event"),
            webhook_url=checked_webhook_url(options.get("webhook_url")),
            new_job=bool(options.get("new_job", False)),
        )


class JobRunner:
    """Claim, drive, execute and finish jobs with one set of settings, one journal and one credential lookup."""

    def __init__(
        self, settings: Settings, journal: Callable[[], Journal], credential: Callable[[str], Credential | None]
    ) -> None:
        self.settings = settings
        self._journal = journal
        self._credential = credential

    @property
    def journal(self) -> Journal:
        return self._journal()

    # -- entry points ------------------------------------------------------------------------------------
    def run(self, job: PreparedJob, controls: RunControls, *, budget: BudgetCap | None = None) -> LipSyncResult:
        """Claim ``job`` (waiting for another caller running it) and drive it; the claim is always released.

        ``budget``: a new job's record is created only if its worst case fits under the cap (the journal
        checks it in the claim's own transaction, so two processes cannot both pass it)."""
        key, output = job.idempotency_key, job.output_path
        # A file at the output is this job's own only if the job fetched it (or may have, part-way through a
        # fetch); otherwise it belongs to someone else, and the job is refused before its claim, so nothing is
        # journalled (docs/reliability.md, "What is journalled").
        known = self.journal.find_latest(key)
        if not (
            known is not None and known.output_path == str(output) and known.state in (TERMINAL_OK, *PROVIDER_STATES)
        ):
            check_free(output, overwrite=controls.overwrite, route=job.route.info().name)
        progress = controls.progress
        claim, record = self.journal.claim(
            key,
            job.new_record,
            on_wait=lambda _: progress("waiting for another caller running the same job", None) if progress else None,
            budget=budget,
        )
        try:
            return self.drive(
                job.route, claim, record, job.inputs, output, deadline=job.deadline, controls=controls, budget=budget
            )
        except LatentSyncError as exc:
            if exc.job_id is None:
                exc.job_id = claim.job_id  # callers (batch, fallback) find the job's record from the error
            raise
        finally:
            claim.release()

    def submit(
        self, job: PreparedJob, controls: RunControls, *, budget: BudgetCap | None = None
    ) -> tuple[str, LipSyncResult | None]:
        """Claim ``job`` and drive it until the provider holds it: its job id. A route that cannot stop there
        (local) runs it to the end, and a finished job is found finished: then its result too."""
        try:
            result = self.run(job, replace(controls, submit_only=True), budget=budget)
        except Submitted:
            record = self.journal.find_latest(job.idempotency_key)
            assert record is not None  # noqa: S101 - the claim wrote it before the submit
            return record.job_id, None
        return result.job_id, result

    def carry_on(
        self, route: Route, job_id: str, inputs: JobInputs | None, *, deadline: float, controls: RunControls
    ) -> LipSyncResult:
        """Carry on a journalled job to its end (``Job.wait``): its own provider job if it has one. A caller
        running it already is waited for; then its result is returned, never fetched twice."""
        claim, record = self.journal.claim_job(job_id)
        try:
            if inputs is None:
                inputs = JobInputs.from_record(record, need_inputs=must_submit(record, controls))
            output = Path(record.output_path or f"{record.job_id}.mp4")
            return self.drive(
                route,
                claim,
                record,
                inputs,
                output,
                deadline=deadline,
                controls=replace(controls, overwrite=True, submit_only=False),
            )
        except LatentSyncError as exc:
            if exc.job_id is None:
                exc.job_id = job_id
            raise
        finally:
            claim.release()

    def resume(self, route: Route, job_id: str, *, deadline: float, controls: RunControls) -> LipSyncResult:
        """Carry on a journalled job: its own provider job if it has one, its recorded inputs if not."""
        claim, record = self.journal.claim_job(job_id)
        try:
            inputs = JobInputs.from_record(record, need_inputs=must_submit(record, controls))
            output = Path(record.output_path or f"{record.job_id}.mp4")
            resumed = RunControls(
                progress=controls.progress,
                retry_failed=controls.retry_failed,
                force_resubmit=controls.force_resubmit,
                overwrite=True,
                cancel_event=controls.cancel_event,
                new_job=controls.new_job,
            )
            return self.drive(route, claim, record, inputs, output, deadline=deadline, controls=resumed)
        finally:
            claim.release()

    # -- the claimed job ---------------------------------------------------------------------------------
    def drive(
        self,
        route: Route,
        claim: Claim,
        record: JobRecord,
        inputs: JobInputs,
        output_path: Path,
        *,
        deadline: float,
        controls: RunControls,
        budget: BudgetCap | None = None,
    ) -> LipSyncResult:
        """Decide what the claimed job needs (nothing, a re-run, a carry-on, a new job) and do it.

        A made job is never made again without ``new_job`` (:mod:`.job_truth`): its output here is the
        answer; an output deleted or expired is told from the record; one that may still be at the provider
        is fetched again, and the job stays fetched whatever that fetch meets."""
        if record.state == TERMINAL_OK and output_here(record):
            log.info("job %s already fetched; not running again", record.job_id)
            return result_from_record(record).model_copy(update={"already_done": True})
        gone = gone_reason(record)
        fetched_before = was_fetched(record) if gone is None else None
        if gone is not None or (record.state in TERMINAL_BAD and controls.new_job and reached_provider(record)):
            if not controls.new_job:
                raise output_gone(record, gone or "")
            record = start_new_job(self.journal, claim, record, self.settings, budget)
        elif record.state in TERMINAL_BAD:
            if reached_provider(record) and not controls.retry_failed:
                raise JobAlreadyFailed(
                    f"job {record.job_id} already ended {record.state} ({record.failure_reason}); running it "
                    "again would pay for a new provider job: pass retry_failed=True (CLI: --retry-failed) to do "
                    "that in this job, or new_job=True (CLI: --new-job) for a new job",
                    route=record.route,
                    request_id=record.provider_request_id,
                )
            if record.provider_request_id:
                record.previous_request_ids.append(record.provider_request_id)
            record.provider_request_id = None
            record.provider_inputs = None
            record.output_expires_at = None
            record.state = "created"
            record.failure_reason = None
        elif fetched_before is not None:  # the output went missing here; the provider may hold it: fetch again
            record.state = "completed"
        record.output_path = str(output_path)
        overwrite = controls.overwrite or record.state in PROVIDER_STATES
        controls = replace(controls, webhook_url=self._webhook_url(record.job_id, controls.webhook_url))
        job = self.context(
            claim, record, inputs, output_path, deadline=deadline, overwrite=overwrite, controls=controls
        )
        return guarded(self.journal, claim.owner, fetched_before, lambda: self.execute(route, job))

    def _webhook_url(self, job_id: str, given: str | None) -> str | None:
        """The callback of this job's submit: the one given now (kept with the job in the journal), else
        the one kept, so a job resumed before its submit was sent (another process, ``jobs resume``,
        ``Job.wait``) still calls it back."""
        url = given if given is not None else webhook_url_of(self.journal.path, job_id)
        if given is not None:
            set_webhook_url(self.journal.path, job_id, given)
        if url is not None:
            hide_webhook_urls_in_logs()  # fal and WaveSpeed take it in the submit's query, which httpx logs
        return url

    def context(
        self,
        claim: Claim,
        record: JobRecord,
        inputs: JobInputs,
        output_path: Path,
        *,
        deadline: float,
        overwrite: bool,
        controls: RunControls,
    ) -> JobContext:
        """The job as its route sees it, writing through to the journal as the claim's owner."""
        owner = claim.owner
        claim.start_heartbeat()
        return JobContext(
            record=record,
            request=inputs.request,
            video_info=inputs.video,
            audio_info=inputs.audio,
            output_path=output_path,
            settings=self.settings,
            credential=self._credential(record.route),
            deadline=time.monotonic() + deadline,
            overwrite=overwrite,
            progress=controls.progress,
            persist=lambda r: self.journal.save(r, owner=owner),
            force_resubmit=controls.force_resubmit,
            cancel_event=controls.cancel_event or threading.Event(),
            cancel_flag=claim.cancel_requested,
            others=lambda: self.journal.list(limit=500, route=record.route),
            stop_after_submit=controls.submit_only,
            webhook_url=controls.webhook_url,
        )

    def execute(self, route: Route, job: JobContext) -> LipSyncResult:
        started = time.monotonic()
        record = job.record
        job.mark(interrupted=None)
        try:
            outcome = route.execute(job)
        except Submitted:
            raise  # the provider holds the job; ``Job.wait`` or a webhook carries it on
        except ClaimLost as lost:  # another caller owns the job now; this one writes nothing more
            if _cancelled_all_the_same(job):
                raise JobCancelled(
                    f"job {record.job_id} was cancelled; the caller that took it over carries the "
                    f"cancel out ({lost.message})",
                    route=record.route,
                    request_id=record.provider_request_id,
                ) from lost
            raise
        except LatentSyncError as exc:
            self.finish_failed(job, exc, started)
            raise
        except Exception as exc:
            wrapped = RouteError(
                f"unexpected {type(exc).__name__}: {exc}", route=record.route, request_id=record.provider_request_id
            )
            self.finish_failed(job, wrapped, started)
            raise wrapped from exc
        record.cost.actual = outcome.actual_cost
        if outcome.cost_basis:
            record.cost.basis = outcome.cost_basis
        record.timings["total_seconds"] = round(time.monotonic() - started, 3)
        job.mark(
            "fetched",
            output_path=str(outcome.output_path),
            output_uri=outcome.output_url,
            provider_request_id=outcome.provider_request_id or record.provider_request_id,
            completed_at=utcnow(),
            failure_reason=None,
        )
        self._sink(record)
        return result_from_record(record)

    def finish_failed(self, job: JobContext, exc: LatentSyncError, started: float) -> None:
        """Journal a failure: terminal if the provider job ended badly (or none was made), else interrupted."""
        record = job.record
        record.timings["total_seconds"] = round(time.monotonic() - started, 3)
        reason = f"{type(exc).__name__}: {exc.message}"
        try:
            if record.state in TERMINAL_BAD:
                job.mark()  # the route already said how the provider job ended
            elif record.state in PROVIDER_STATES:
                job.mark(interrupted=reason, failure_reason=reason)  # re-running carries on the same provider job
            else:
                job.mark(
                    "cancelled" if isinstance(exc, (JobCancelled, DeadlineExceeded)) else "failed",
                    failure_reason=reason,
                )
        except Exception as journal_error:  # noqa: BLE001 - the job's own error is the one to raise
            log.warning("could not journal the failure of job %s: %s", record.job_id, journal_error)
            return
        self._sink(record)

    def _sink(self, record: JobRecord) -> None:
        if self.settings.jsonl_path is not None:
            append_jsonl(self.settings.jsonl_path, record)


def _cancelled_all_the_same(job: JobContext) -> bool:
    """Whether an owner that lost its claim was cancelled (by its caller, or through the journal): then the
    cancel, not the lost claim, is what its caller is told."""
    try:
        return job.cancel_requested()
    except (sqlite3.Error, LatentSyncError):  # the journal cannot say: only what this owner saw itself
        return job.cancel_event.is_set()


def checked_webhook_url(url: str | None) -> str | None:
    """A callback URL a provider can be given: https, or plain http only to a loopback host (a fake, a test)."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    from .errors import InvalidParameter
    from .types import is_loopback_host

    parts = urlsplit(str(url))
    if not parts.hostname or not (
        parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))
    ):
        raise InvalidParameter("webhook_url", "must be an https URL (plain http only to a loopback host)")
    return str(url)


def reached_provider(record: JobRecord) -> bool:
    """Whether the job ever got as far as a submit (so a new attempt would be a new paid provider job)."""
    return record.provider_request_id is not None or record.provider_inputs is not None


def must_submit(record: JobRecord, controls: RunControls) -> bool:
    """Whether carrying this job on may upload its inputs again (then they must still be there)."""
    if controls.new_job and (record.state in TERMINAL_BAD or gone_reason(record) is not None):
        return True
    if record.state in TERMINAL_BAD:
        return controls.retry_failed or not reached_provider(record)
    if record.state == "submitting":
        return controls.force_resubmit
    return record.state in ("created", "uploaded")
