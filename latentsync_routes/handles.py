"""Job handles: submit now, hear back later (``LipSyncClient.submit`` and ``LipSyncClient.job``).

A :class:`Job` is nothing but a job id and the client that reads the journal: every method reads or writes
the journal row, so a handle rebuilt in another process (``client.job(id_or_prefix)``) is as good as the one
``submit`` returned. What makes a job paid for once and fetched once is the journal's claim, not the handle:
two ``wait`` calls on one job (threads or processes) are one owner fetching and one caller waiting for it and
then reading its result; a ``wait`` after a crash carries on the same provider job where it stopped.

``wait(timeout=None)`` runs the job to its end under the job's own deadline (on expiry the provider job is
cancelled, as ``run`` does). ``wait(timeout=T)`` is the caller's patience, not the job's deadline: after ``T``
seconds it raises :class:`WaitTimeout` and the job keeps running at the provider.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ClaimTimeout, ConfigurationError, LatentSyncError, WaitTimeout
from .job_runner import JobInputs, RunControls
from .journal import Claim, Journal
from .types import JobRecord, LipSyncResult

if TYPE_CHECKING:
    from .config import Settings
    from .job_runner import JobRunner
    from .routes.base import JobContext, Route
    from .sync_gate import SyncGate


class JobClient(Protocol):
    """What a :class:`Job` needs of the client that made it (``LipSyncClient`` is one): its settings, journal,
    runner and routes, and the cancel and delete it forwards. The handle sits below the facade that makes
    handles, so it names only these, not the facade."""

    @property
    def settings(self) -> Settings: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def runner(self) -> JobRunner: ...

    def route(self, name: str | None = None) -> Route: ...

    def cancel(self, job_id: str, *, wait_seconds: float = 60.0) -> JobRecord: ...

    def delete_job(self, job_id: str, *, delete_output: bool = True) -> JobRecord: ...


class Job:
    """A handle on one journalled job. Cheap to make; holds no claim and no connection between calls."""

    def __init__(
        self,
        client: JobClient,
        job_id: str,
        *,
        inputs: JobInputs | None = None,
        result: LipSyncResult | None = None,
        sync_gate: SyncGate | None = None,
    ) -> None:
        self._client = client
        self._id = job_id
        #: the probed inputs, when this handle was made by ``submit`` in this process (a re-upload needs them)
        self._inputs = inputs
        #: the result of a ``submit`` that ran the job to its end (the local route), for the first ``wait``
        self._result = result
        #: ``submit``'s ``evaluate`` / ``min_sync_confidence``, applied by ``wait`` once the output is here
        self._gate = sync_gate

    def __repr__(self) -> str:
        record = self._client.journal.get(self._id)
        state = record.state if record is not None else "?"
        return f"Job(id={self._id!r}, route={self.route!r}, state={state!r})"

    @property
    def id(self) -> str:
        return self._id

    @property
    def record(self) -> JobRecord:
        """The job's journal record as it stands now."""
        record = self._client.journal.get(self._id)
        if record is None:  # the journal never deletes jobs: only a hand-edited file gets here
            raise ConfigurationError(f"no job {self._id!r} in the journal at {self._client.journal.path}")
        return record

    @property
    def route(self) -> str:
        return self.record.route

    @property
    def state(self) -> str:
        """The journal's state: ``submitted`` while the provider runs it, ``fetched`` once the output is here."""
        return self.record.state

    def status(self) -> JobRecord:
        """Ask the provider once how the job stands and journal the answer; the record as it then stands.

        When another caller runs the job now (a ``wait`` elsewhere), that caller keeps the journal current and
        this one reads it instead of polling beside it.
        """
        held = claim_now(self._client.journal, self._id)
        if held is None:
            return self.record
        claim, record = held
        try:
            if record.state == "submitted" and record.provider_request_id:
                poll_once(self._client, claim, record)
        finally:
            claim.release()
        return self.record

    def wait(self, timeout: float | None = None, *, controls: RunControls | None = None) -> LipSyncResult:
        """The job's result, as ``run`` returns it, with the output fetched (once, whoever else waits)."""
        if self._result is not None:  # submit ran the job to its end here: run's result, not a re-read
            result, self._result = self._result, None
        else:
            if timeout is not None:
                self._wait_for_provider(timeout)
            result = self.finish(deadline=self._client.settings.deadline_seconds, controls=controls)
        if self._gate is None:
            return result
        return self._gate.judge(result, self._client.journal, jsonl=self._client.settings.jsonl_path)

    def finish(self, *, deadline: float, controls: RunControls | None = None) -> LipSyncResult:
        """Carry the job on to its end within ``deadline`` seconds (then it is cancelled at the provider)."""
        client = self._client
        return client.runner.carry_on(
            client.route(self.route), self._id, self._inputs, deadline=deadline, controls=controls or RunControls()
        )

    def _wait_for_provider(self, timeout: float) -> None:
        """Poll (through :meth:`status`) until the provider job ended or ``timeout`` passed."""
        give_up = time.monotonic() + timeout
        while True:
            record = self.status()
            if record.state not in ("submitting", "submitted"):
                return
            left = give_up - time.monotonic()
            if left <= 0:
                error = WaitTimeout(
                    f"job {self._id} is still running at {record.route} after {timeout:g} s; it "
                    "keeps running there: wait again, or cancel it",
                    route=record.route,
                    request_id=record.provider_request_id,
                )
                error.job_id = self._id
                raise error
            time.sleep(min(left, self._client.settings.poll_interval))

    def cancel(self, *, wait_seconds: float = 60.0) -> JobRecord:
        """Cancel the job and its provider job, whoever runs it (:meth:`LipSyncClient.cancel`)."""
        return self._client.cancel(self._id, wait_seconds=wait_seconds)

    def delete(self, *, delete_output: bool = True) -> JobRecord:
        """Delete the job's output and its remote files where allowed (:meth:`LipSyncClient.delete_job`)."""
        return self._client.delete_job(self._id, delete_output=delete_output)


def claim_now(journal: Journal, job_id: str) -> tuple[Claim, JobRecord] | None:
    """The job's claim if nobody holds it now, else ``None`` (that caller keeps the journal current)."""
    try:
        return journal.claim_job(job_id, wait_s=0.0)
    except ClaimTimeout:
        return None


def context_of(client: JobClient, claim: Claim, record: JobRecord) -> JobContext:
    """The claimed job as its route sees it, for one poll (its inputs are at the provider already)."""
    return client.runner.context(
        claim,
        record,
        JobInputs.from_record(record, need_inputs=False),
        Path(record.output_path or f"{record.job_id}.mp4"),
        deadline=client.settings.deadline_seconds,
        overwrite=True,
        controls=RunControls(),
    )


def poll_once(client: JobClient, claim: Claim, record: JobRecord) -> str | None:
    """One provider poll of a claimed, submitted job, journalled as the wait loop would (``completed``, or how
    it ended badly and what that was billed); the provider's state, ``None`` for a route that cannot poll."""
    route: Route | Any = client.route(record.route)
    check = getattr(route, "check_once", None)
    if check is None:
        return None
    try:
        return str(check(context_of(client, claim, record)))
    except LatentSyncError:  # the provider job ended badly: journalled, and told by ``wait``
        return "ended"
