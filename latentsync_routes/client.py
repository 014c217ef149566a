"""The one data path: request -> policy -> estimate -> claim -> route -> result -> record.

Everything that must hold on every route lives here, once: parameters, inputs and the output destination
are checked before anything leaves the machine, the policy and the budget stop a job before payment, the
job is *claimed* in the journal before the provider sees it (so identical calls, in threads or processes,
make one provider job), and every outcome, good or bad, ends as a :class:`JobRecord`.

Re-running a call is always safe. A job that finished returns its result; one stopped by a local failure
(a poll, a download, the disk, the journal, a kill) carries on its *same* provider job; one whose
provider job failed is paid for again only with ``retry_failed=True``; one whose submit was ambiguous is
looked up at the provider, and submitted again only with ``force_resubmit=True``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from . import money
from .budget import BudgetCap, period_words
from .config import Credential, Settings, client_settings, route_credential
from .consent import checked_consent
from .errors import (
    ConfigurationError,
    DummyCredentialRefused,
    InvalidParameter,
    RouteNotInstalled,
)
from .handles import Job
from .job_runner import JobInputs, JobRunner, PreparedJob, RunControls
from .journal import TERMINAL_BAD, TERMINAL_OK, Journal
from .media import probe_inputs
from .options import BatchOptions, JobOptions, MediaLike, RunOptions, request_of
from .outputs import file_in, resolve_output
from .policy import CheckResult, enforce
from .preflight import marked_estimate, missing_install, preflight
from .pricing import check_budget
from .records import derive_idempotency_key
from .routes.base import ProgressCallback, Route, RouteInfo, create_route, route_names
from .sync_gate import gate_of
from .types import CostEstimate, JobRecord, LipSyncRequest, LipSyncResult, MediaInfo
from .webhooks import WebhookKeys

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .batch.report import BatchReport

log = logging.getLogger(__name__)


class LipSyncClient:
    """Run LatentSync on any route with the same call.

    >>> client = LipSyncClient(route="fal", consent="signed release #42")   # doctest: +SKIP
    >>> client.estimate("clip.mp4", "voice.wav").amount                    # doctest: +SKIP
    >>> result = client.run("clip.mp4", "voice.wav", output="out.mp4")      # doctest: +SKIP
    """

    def __init__(
        self,
        route: str | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        consent: str | None = None,
        budget_per_call: float | None = None,
        budget_total: float | None = None,
        credentials: dict[str, str | SecretStr] | None = None,
        credentials_only: bool = False,
        route_settings: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """``credentials`` maps a route name to its key (over the variable and keyring its kit names; with
        ``credentials_only`` those are never read). ``route_settings`` maps a route name to its own settings
        (``{"fal": {"base_url": ...}}``), over those of ``settings`` or the environment."""
        self.settings = client_settings(
            settings,
            config_file,
            route_settings,
            route=route,
            budget_per_call=budget_per_call,
            budget_total=budget_total,
        )
        self.default_consent = checked_consent(consent, where="LipSyncClient(consent=...)")
        self._explicit: dict[str, str | SecretStr] = dict(credentials or {})
        self._credentials_only = credentials_only
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._journal: Journal | None = None
        self._runner: JobRunner | None = None
        self._webhook_keys: WebhookKeys | None = None

    def __repr__(self) -> str:
        return f"LipSyncClient(route={self.settings.route!r}, home={str(self.settings.home)!r})"

    # -- routes ---------------------------------------------------------------------------------------
    def credential(self, route: str) -> Credential | None:
        """The route's credential: an argument, else the variable its kit names, else the keyring."""
        return route_credential(route, self._explicit.get(route), stored=not self._credentials_only)

    def route(self, name: str | None = None) -> Route:
        """The route object for ``name`` (the configured default when ``None``), built once per client."""
        name = name or self.settings.route
        with self._lock:
            if name not in self._routes:
                self._routes[name] = create_route(name, self.settings, self.credential(name))
            return self._routes[name]

    @contextlib.contextmanager
    def using_route(self, name: str, route: Route) -> Iterator[None]:
        """Within the block, this client's jobs on ``name`` go through ``route`` (an executor's own route object,
        e.g. the local route whose model work runs on Ray actors); checks, claims and records stay the client's."""
        with self._lock:
            previous = self._routes.get(name)
            self._routes[name] = route
        try:
            yield
        finally:
            with self._lock:
                if previous is None:
                    self._routes.pop(name, None)
                else:
                    self._routes[name] = previous

    def budget_cap(self, estimate: CostEstimate, *, sandbox: bool = False) -> BudgetCap | None:
        """``budget_total`` over ``budget_period`` for a job of this estimate, or ``None`` without a cap."""
        total = self.settings.budget_total
        if total is None:
            return None
        return BudgetCap(total, self.settings.budget_period, estimate.high, estimate.route, sandbox=sandbox)

    def budget_row(self, estimate: CostEstimate) -> CheckResult | None:
        """The ``budget`` row ``check`` shows: whether this job fits under ``budget_total`` right now."""
        cap = self.budget_cap(estimate, sandbox=self.route(estimate.route).sandbox())
        if cap is None:
            return None
        committed = self.journal.committed(cap)
        problem = cap.problem(committed)
        reason = problem or (
            f"up to ${estimate.high:.4f}; ${money.from_micros(committed):.4f} of "
            f"${cap.total:.4f} committed {period_words(cap.period)}"
        )
        return CheckResult(check="budget", passed=problem is None, reason=reason)

    def routes(self) -> list[RouteInfo]:
        """Every registered route's declared facts."""
        return [self.route(name).info() for name in route_names()]

    @property
    def journal(self) -> Journal:
        """The job journal (``jobs.sqlite3`` in the home folder), opened on first use."""
        if self._journal is None:
            self._journal = Journal(self.settings.journal_path)
        return self._journal

    @property
    def runner(self) -> JobRunner:
        """The job runner every job of this client goes through (claim, drive, execute, finish)."""
        if self._runner is None:
            self._runner = JobRunner(self.settings, lambda: self.journal, self.credential)
        return self._runner

    # -- steps 1-3 -------------------------------------------------------------------------------------
    def _normalise(self, route: Route, request: LipSyncRequest) -> tuple[MediaInfo, MediaInfo]:
        """Refuse unsupported parameters, then probe and validate both inputs.

        The route's input limits are not applied here: they are the checklist's ``input_limits`` row
        (a STOP, exit 3) and the estimate's ``refused``, read from one place (:func:`limit_problems`).
        """
        route.provider_parameters(request)  # unsupported parameters are refused before any probe or upload
        return probe_inputs(request.video, request.audio)

    def check(
        self,
        video: MediaLike,
        audio: MediaLike,
        *,
        route: str | None = None,
        consent: str | None = None,
        deadline_seconds: float | None = None,
        face_check: bool | None = None,
    ) -> list[CheckResult]:
        """The safety checklist for this job on this route, without running anything.

        The same rows ``run`` enforces before any upload: the policy's, the route's input limits, the
        deadline against the estimate's expected time, and a face in a sample of the video's frames.
        A failed row is a STOP (``run`` raises :class:`PolicyViolation`, exit 3); nothing is raised here.
        """
        return self.assess(
            video, audio, route=route, consent=consent, deadline_seconds=deadline_seconds, face_check=face_check
        )[0]

    def assess(
        self,
        video: MediaLike,
        audio: MediaLike,
        *,
        route: str | None = None,
        consent: str | None = None,
        deadline_seconds: float | None = None,
        face_check: bool | None = None,
        **options: Unpack[JobOptions],
    ) -> tuple[list[CheckResult], CostEstimate]:
        """``check`` and ``estimate`` at once, the inputs probed once: what a batch plans each row with."""
        chosen = self.route(route)
        request = request_of(video, audio, options)
        deadline = _deadline(deadline_seconds, self.settings.deadline_seconds)
        video_info, audio_info = self._normalise(chosen, request)
        return preflight(
            chosen,
            self.settings.policy,
            request,
            video_info,
            audio_info,
            consent=consent or self.default_consent,
            deadline=deadline,
            face_check=face_check,
        )

    def estimate(
        self, video: MediaLike, audio: MediaLike, *, route: str | None = None, **options: Unpack[JobOptions]
    ) -> CostEstimate:
        """The price of this job on one route, before anything is uploaded (steps 1 and 3).

        Inputs the route (or the policy) would refuse are priced all the same, with the reason in
        :attr:`CostEstimate.refused`, the same one ``check`` shows as a STOP row and ``run`` stops on.
        """
        chosen = self.route(route)
        request = request_of(video, audio, options)
        video_info, audio_info = self._normalise(chosen, request)
        return marked_estimate(chosen, self.settings.policy, request, video_info, audio_info)

    def estimate_all(self, video: MediaLike, audio: MediaLike) -> list[CostEstimate]:
        """Estimates on every route, probing the inputs once; a route that would refuse them says why in
        :attr:`CostEstimate.refused` (pick among those where it is ``None``)."""
        request = request_of(video, audio, {})
        video_info, audio_info = probe_inputs(request.video, request.audio)
        return [
            marked_estimate(self.route(name), self.settings.policy, request, video_info, audio_info)
            for name in route_names()
        ]

    # -- steps 4-6 -------------------------------------------------------------------------------------
    def run(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> LipSyncResult:
        """Lip-sync ``video`` to ``audio`` and write the result to ``output`` (an .mp4 path or a folder).

        Calls with the same inputs, parameters, route and output (or the same ``idempotency_key``) are one
        job: a concurrent one waits for the first and gets its result; a later one returns the result, or
        carries on the same provider job where a local failure stopped it. A job whose provider job failed
        raises :class:`JobAlreadyFailed` unless ``retry_failed=True`` (a new paid job). After an ambiguous
        submit, ``force_resubmit=True`` submits again if a lookup cannot find the first. A finished job whose
        output is gone (deleted, expired) raises :class:`OutputGone`; ``new_job=True`` pays for a new job.
        ``evaluate=True``: ``result.sync_scores``; under ``min_sync_confidence``, :class:`SyncQualityFailed`
        (docs/quality.md).
        """
        if (options.get("route") or self.settings.route) == "cheapest" or options.get("routes"):
            from .choice import run_chosen  # route choice and fallback: one prepared job per route tried

            return run_chosen(self, video, audio, output, **options)
        gate = gate_of(self.settings, options)  # evaluate / min_sync_confidence: weights checked before any upload
        result = self.run_prepared(self.prepare(video, audio, output, **options), RunControls.from_options(options))
        return gate.judge(result, self.journal, jsonl=self.settings.jsonl_path) if gate else result

    def prepare(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> PreparedJob:
        """Everything decided about a job before anything leaves the machine, made once: the request, the
        probed inputs, the checklist (enforced: a STOP raises :class:`PolicyViolation`), the estimate, the
        idempotency key and the output place. ``run_prepared`` runs it; so do batches and the page."""
        chosen = self.route(options.get("route"))
        info = chosen.info()
        request = request_of(video, audio, options)
        chosen.provider_parameters(request)
        deadline = _deadline(options.get("deadline_seconds"), self.settings.deadline_seconds)
        output_path = resolve_output(output, route=info.name)
        video_info, audio_info = self._normalise(chosen, request)
        consent = checked_consent(options.get("consent"), where="consent") or self.default_consent
        to_install = missing_install(chosen)  # first: what to install is the one line a person needs (exit 2)
        if to_install:
            raise RouteNotInstalled(
                f"{to_install}; or choose another route (--route, route=, or "
                "LATENTSYNC_ROUTES_ROUTE; `latentsync-routes routes` lists them)",
                route=info.name,
            )
        checks, estimate = preflight(
            chosen,
            self.settings.policy,
            request,
            video_info,
            audio_info,
            consent=consent,
            deadline=deadline,
            face_check=options.get("face_check"),
        )
        enforce(checks, route=info.name)
        why_not = chosen.availability()
        if why_not:
            refused = getattr(chosen, "credential_refused", None)  # a fakes' key bound for the real host
            raise (DummyCredentialRefused if refused else ConfigurationError)(why_not, route=info.name)
        key = options.get("idempotency_key") or derive_idempotency_key(
            info.name, request, video_info, audio_info, output_path
        )
        if output_path.is_dir():
            output_path = file_in(output_path, request.video.name or "output", key)
        return PreparedJob(
            route=chosen,
            inputs=JobInputs(request, video_info, audio_info),
            checks=checks,
            estimate=estimate,
            idempotency_key=key,
            output_path=output_path,
            consent=consent,
            deadline=deadline,
            sandbox=chosen.sandbox(),
        )

    def run_prepared(self, job: PreparedJob, controls: RunControls | None = None) -> LipSyncResult:
        """Run a prepared job: the per-call cap is checked here, ``budget_total`` as its record is created."""
        check_budget(job.estimate, per_call=self.settings.budget_per_call)
        budget = self.budget_cap(job.estimate, sandbox=job.sandbox)
        return self.runner.run(job, controls or RunControls(), budget=budget)

    def submit(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> Job:
        """What ``run`` does until the provider holds the job (probe, checks, estimate, budget, claim, upload,
        submit), then a :class:`Job`; hear back by ``Job.wait``, ``Job.status`` or ``webhook_url`` and
        :meth:`handle_webhook`. The local route has no provider to hold it: there ``submit`` runs it to the end."""
        if (options.get("route") or self.settings.route) == "cheapest" or options.get("routes"):
            raise InvalidParameter("route", "submit takes one route; route choice and fallback need run")
        gate = gate_of(self.settings, options)
        job = self.prepare(video, audio, output, **options)
        controls = RunControls.from_options(options)
        check_budget(job.estimate, per_call=self.settings.budget_per_call)
        budget = self.budget_cap(job.estimate, sandbox=job.sandbox)
        job_id, result = self.runner.submit(job, controls, budget=budget)
        return Job(self, job_id, inputs=job.inputs, result=result, sync_gate=gate)

    def job(self, id_or_prefix: str) -> Job:
        """A handle on a journalled job by its id or a unique prefix (6+ characters), in any process."""
        return Job(self, self.journal.find(id_or_prefix).job_id)

    def handle_webhook(self, route: str, headers: Mapping[str, str], body: bytes) -> Job:
        """Verify a provider's delivery to ``webhook_url`` as the provider documents it (docs/webhooks.md), then
        carry its job on: output fetched once, cost recorded as a poll records it. A forged, tampered, stale or
        replayed one raises :class:`WebhookRejected` and records nothing. ``body``: the raw request body."""
        from .webhook_receiver import receive

        return receive(self, route, headers, body)

    @property
    def webhook_keys(self) -> WebhookKeys:
        """Each provider's webhook keys or secret, cached with their expiry (``.set(route, value)`` injects)."""
        if self._webhook_keys is None:
            from .webhook_receiver import key_source

            self._webhook_keys = WebhookKeys(key_source(self))
        return self._webhook_keys

    def run_many(self, jobs: Any, **options: Unpack[BatchOptions]) -> BatchReport:
        """Run a batch: a manifest path (CSV or JSONL) or jobs given as dicts, checked and priced whole first.

        A bad row or a worst case over ``budget`` refuses the whole batch before anything is uploaded; then
        jobs run under per-route limits; the report has every row's state, costs, output, error and scores.
        Running the same batch again resumes it: finished jobs are not paid again.
        """
        from .batch.runner import run_batch

        return run_batch(self, jobs, **options)

    def resume(
        self,
        job_id: str,
        *,
        progress: ProgressCallback | None = None,
        retry_failed: bool = False,
        force_resubmit: bool = False,
        deadline_seconds: float | None = None,
        new_job: bool = False,
    ) -> LipSyncResult:
        """Carry on a job from the journal: its own provider job if it has one, its recorded inputs if not; a
        finished job is paid again only with ``new_job=True`` (else, output gone: :class:`OutputGone`)."""
        deadline = _deadline(deadline_seconds, self.settings.deadline_seconds)
        record = self.journal.find(job_id)
        controls = RunControls(
            progress=progress, retry_failed=retry_failed, force_resubmit=force_resubmit, new_job=new_job
        )
        return self.runner.resume(self.route(record.route), record.job_id, deadline=deadline, controls=controls)

    def cancel(self, job_id: str, *, wait_seconds: float = 60.0) -> JobRecord:
        """Cancel a job: its running owner (any process) is asked to cancel its provider job, and this call
        waits for it to end; it takes the job over only from an owner whose process is gone, or whose claim
        stayed silent for a whole lease while it waited. When nobody runs the job, the provider job is
        cancelled from here. Returns the record as it ends."""
        record = self.journal.find(job_id)
        job_id = record.job_id
        if record.state in (TERMINAL_OK, *TERMINAL_BAD):
            return record
        self.journal.request_cancel(record.idempotency_key)
        claim, record = self.journal.claim_job(job_id, wait_s=wait_seconds, for_cancel=True)
        try:
            if record.state not in (TERMINAL_OK, *TERMINAL_BAD):
                job = self.runner.context(
                    claim,
                    record,
                    JobInputs.from_record(record, need_inputs=False),
                    Path(record.output_path or "."),
                    deadline=60.0,
                    overwrite=False,
                    controls=RunControls(),
                )
                self.route(record.route).cancel_job(job)
            return self.journal.get(job_id) or record
        finally:
            claim.release()

    def delete_job(self, job_id: str, *, delete_output: bool = True) -> JobRecord:
        """Remove a job's output here and, where the provider allows, there, as its owner (a running job is
        refused: :class:`JobStillRunning`). The record stays fetched and paid and says what went, and when;
        running the job again then answers :class:`OutputGone` unless ``new_job`` (:mod:`.deletion`)."""
        from .deletion import delete_job

        route = self.route(self.journal.find(job_id).route)
        return delete_job(self.journal, route, self.settings.home, job_id, delete_output=delete_output)


def _deadline(given: float | None, default: float) -> float:
    value = default if given is None else given
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidParameter("deadline_seconds", f"must be a finite number of seconds above 0, got {value!r}")
    return float(value)
