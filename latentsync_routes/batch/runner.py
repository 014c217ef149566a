"""Run a batch: plan it whole (checks, prices, budget), then hand the jobs to an executor and report.

Re-running the same batch is the way to resume it: each job keeps its identity (inputs, parameters, route,
output), so finished jobs return their results from the journal without a provider request, jobs still
running elsewhere are waited for, and jobs stopped by a local failure carry on their same provider job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import money
from ..errors import SyncQualityFailed
from ..sync_gate import gate_of, min_sync_confidence_of
from ..types import LipSyncResult
from .executor import BatchItem, Executor, Outcome, StopSignal, ThreadExecutor
from .manifest import BatchJob, as_jobs, read_manifest
from .plan import BatchPlan, FallbackRule, concurrency_limits, plan_batch
from .report import BatchReport, Tracker, earlier_billed, job_report

if TYPE_CHECKING:
    from .executor import BatchClient

#: called with the tracker's snapshot (done, failed, running, spent, elapsed, eta) after each change
UpdateCallback = Callable[[dict[str, Any]], None]


class _Events:
    """Feeds the tracker from the executor's worker threads and tells the caller after each change."""

    def __init__(self, tracker: Tracker, on_update: UpdateCallback | None) -> None:
        self.tracker = tracker
        self.on_update = on_update

    def _tell(self) -> None:
        if self.on_update is not None:
            self.on_update(self.tracker.snapshot())

    def started(self, item: BatchItem) -> None:
        self.tracker.started(item)
        self._tell()

    def progress(self, item: BatchItem, message: str, fraction: float | None) -> None:
        self.tracker.progress(item, message, fraction)

    def finished(self, item: BatchItem, outcome: Outcome) -> None:
        reported = outcome
        if isinstance(outcome, SyncQualityFailed):  # paid and fetched, under the gate: its cost counts
            outcome = outcome.result
        if isinstance(outcome, LipSyncResult):
            paid = outcome.cost.actual if outcome.cost.actual is not None else outcome.cost.estimated
            cost = money.total([paid, outcome.cost.billed_failures, earlier_billed(outcome)])
        else:
            cost = 0.0
        self.tracker.finished_item(item, reported, cost)
        self._tell()


def make_executor(executor: str | Executor | None, *, address: str | None = None) -> Executor:
    """``"local"`` (threads in this process, the default), ``"ray"`` (a Ray cluster), or an executor object."""
    if executor is None or executor == "local":
        return ThreadExecutor()
    if executor == "ray":
        from ..routes.base import module_available
        from .ray_executor import RayExecutor  # Ray is an optional extra, imported only when asked for

        if not module_available("ray"):  # refused, never run on threads instead of the cluster asked for
            from .ray_executor import import_ray

            import_ray()

        ray_executor: Executor = RayExecutor(address=address)
        return ray_executor
    if isinstance(executor, str):
        from ..errors import ConfigurationError

        raise ConfigurationError(f"unknown executor {executor!r}: use 'local' or 'ray'")
    return executor


def load_jobs(jobs: str | Path | Iterable[BatchJob | Mapping[str, Any]]) -> list[BatchJob]:
    """A manifest path, or jobs given in code, as checked :class:`BatchJob` rows."""
    if isinstance(jobs, (str, Path)):
        return read_manifest(jobs)
    return as_jobs(jobs)


def execute_plan(
    client: BatchClient,
    plan: BatchPlan,
    *,
    concurrency: Mapping[str, int] | None = None,
    executor: str | Executor | None = None,
    address: str | None = None,
    on_update: UpdateCallback | None = None,
    stop: StopSignal | None = None,
) -> BatchReport:
    """Run a checked plan and report every job, in manifest order."""
    limits = concurrency_limits(client, plan, concurrency)
    if executor == "ray" and "local" not in (concurrency or {}):
        limits.pop("local", None)  # one local job per actor: the pool's size is the limit unless one is given
    tracker = Tracker(plan.items, limits)
    signal = stop or StopSignal()
    outcomes = make_executor(executor, address=address).run(
        client, plan.items, limits=limits, events=_Events(tracker, on_update), stop=signal
    )
    rows = [job_report(item, outcomes[item.index], client.journal) for item in plan.items]
    return BatchReport(jobs=rows, interrupted=signal.requested.is_set())


def run_batch(
    client: BatchClient,
    jobs: str | Path | Iterable[BatchJob | Mapping[str, Any]],
    *,
    route: str | None = None,
    consent: str | None = None,
    budget: float | None = None,
    among: Sequence[str] | None = None,
    fallback: bool = False,
    fallback_after_billed_failure: bool = False,
    fallback_on_quality: bool = False,
    report: str | os.PathLike[str] | None = None,
    evaluate: bool = False,
    min_sync_confidence: float | None = None,
    syncnet_weights: str | os.PathLike[str] | None = None,
    **execution: Any,
) -> BatchReport:
    """Plan (refusing bad rows and an over-budget total before anything runs), run, and report.

    ``evaluate`` scores every output; ``min_sync_confidence`` gates the rows whose manifest sets none (the
    SyncNet weights are checked once, before anything runs: sync_gate.py). ``execution``:
    :func:`execute_plan`'s ``concurrency``, ``executor``, ``address``, ``on_update``, ``stop``."""
    rule = FallbackRule(fallback, fallback_after_billed_failure, fallback_on_quality)
    rows = with_quality(client, load_jobs(jobs), evaluate, min_sync_confidence, syncnet_weights)
    plan = plan_batch(client, rows, route=route, consent=consent, budget=budget, among=among, fallback=rule)
    result = execute_plan(client, plan, **execution)
    if report is not None:
        result.write(report)
    return result


def with_quality(
    client: BatchClient,
    jobs: list[BatchJob],
    evaluate: bool,
    minimum: float | None,
    weights: str | os.PathLike[str] | None = None,
) -> list[BatchJob]:
    """The rows with the batch's scoring options; the weights are loaded here, before anything runs, when
    any row is scored (the setting ``min_sync_confidence`` scores them all)."""
    minimum = min_sync_confidence_of(minimum)
    path = str(weights) if weights is not None else None
    jobs = [
        job.model_copy(
            update={
                "evaluate": job.evaluate or evaluate,
                "min_sync_confidence": minimum if job.min_sync_confidence is None else job.min_sync_confidence,
                "syncnet_weights": job.syncnet_weights or path,
            }
        )
        for job in jobs
    ]
    scored = client.settings.min_sync_confidence is not None
    if scored or any(job.evaluate or job.min_sync_confidence is not None for job in jobs):
        gate_of(client.settings, {"evaluate": True, "syncnet_weights": path})  # no weights: nothing runs
    return jobs
