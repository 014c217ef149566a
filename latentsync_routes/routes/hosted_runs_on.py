"""A provider with no cancel: a job stopped at its deadline runs on there, and is paid if it completes.

WaveSpeed publishes no cancel endpoint (its fact ``no-cancel``). Marking such a job ``cancelled`` at the
deadline would leave a prediction that completes and is billed with an output nobody can fetch. So the
template, for a route whose ``CAN_CANCEL`` is False, follows the job for a bounded time and then leaves it
resumable (``submitted`` or ``completed``, ``interrupted``): its worst case is counted in
``cost.billed_unknown`` until the output is fetched, and running the same command again or ``jobs resume``
fetches it without paying again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NoReturn

from ..deadlines import deadline_scope
from ..errors import DeadlineExceeded, DeadlinePassed
from ..retry import StepFailure, record_attempt
from .hosted_endings import ended_badly
from .hosted_expiry import made
from .hosted_lookup import with_worst_case, without_worst_case

if TYPE_CHECKING:
    from .base import JobContext
    from .hosted_hooks import HostedHooks
    from .hosted_status import Status

#: The ``billed_unknown_basis`` note of a job left running at a provider with no cancel.
RUNS_ON_NOTE = "runs on past its deadline"


def worst(route: HostedHooks, job: JobContext) -> float:
    try:
        return route.estimate(job.request, job.video_info, job.audio_info).high
    except Exception:  # noqa: BLE001 - the estimate ran before the job; this only guards a resume
        return job.record.cost.estimated


def follow(route: HostedHooks, job: JobContext, request_id: str, seconds: float) -> Status | None:
    """Polls until the provider job ends, for at most ``seconds``; the last status seen."""
    last: Status | None = None
    give_up = time.monotonic() + seconds
    with deadline_scope(give_up):
        while time.monotonic() < give_up:
            try:
                last = route.poll(job, request_id)
            except (StepFailure, DeadlinePassed):
                break
            if last.state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(min(max(route.settings.poll_interval, 0.05), 1.0))
    return last


def outlive_deadline(route: HostedHooks, job: JobContext, request_id: str, seconds: float) -> NoReturn:
    """The deadline passed on a provider with no cancel: follow, then leave the job resumable and say so."""
    last = follow(route, job, request_id, seconds)
    if last is not None and last.state in ("failed", "cancelled"):
        ended_badly(route, job, request_id, last, seconds)
    amount = worst(route, job)
    if last is not None and last.state == "succeeded":
        said = "it completed after the deadline and is billed"
        job.mark("completed", **made(route, job), **with_worst_case(job.record, amount, said, RUNS_ON_NOTE))
    else:
        said = f"{route.name} has no cancel, so it runs on and is billed when it completes"
        job.mark(**with_worst_case(job.record, amount, said, RUNS_ON_NOTE))
    error = DeadlineExceeded(
        f"{route.name} request {request_id} did not finish within the job deadline; {said} (counted at its worst "
        f"case ${amount:.4f} until fetched). Run the same command again, or `jobs resume {job.record.job_id}`, to "
        "fetch its output: nothing is paid again",
        route=route.name,
        request_id=request_id,
    )
    record_attempt(job, "wait", ok=False, error=error, request_id=request_id)
    raise error


def fetched(route: HostedHooks, job: JobContext) -> None:
    """The output is on disk: a worst case counted while the job ran on gives way to the actual cost."""
    update = without_worst_case(job.record, worst(route, job), RUNS_ON_NOTE)
    if update:
        job.mark(**update)
