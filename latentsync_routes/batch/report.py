"""What a batch did, job by job and in total, as one object, a JSON document and a CSV table."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .. import money
from ..errors import JobCancelled, NotStarted, SyncQualityFailed
from ..journal import TERMINAL_OK
from ..types import LipSyncResult
from .executor import BatchItem, Outcome

if TYPE_CHECKING:
    from ..journal import Journal

CSV_COLUMNS = (
    "line", "job_id", "route", "state", "estimated", "actual", "failure_billed", "output_path", "error",
    "lse_c", "lse_d", "av_offset", "sync_gate",
)  # fmt: skip


class BatchJobReport(BaseModel):
    """One manifest row's outcome."""

    line: int
    job_id: str | None = None
    route: str
    state: str
    estimated: float
    actual: float | None = None
    failure_billed: float = 0.0
    currency: str = "USD"
    output_path: str | None = None
    route_choice: str | None = None
    error: dict[str, Any] | None = None
    #: the output's scores and the gate's outcome (``evaluate`` / ``min_sync_confidence``): ``lse_c``,
    #: ``lse_d``, ``av_offset``, ``gate`` (``passed``, ``failed-quality``, ``not gated``), ``error``
    sync: dict[str, Any] | None = None
    #: the full result of a job that finished (left out of the JSON document; its record is in the journal)
    result: LipSyncResult | None = Field(default=None, exclude=True)

    @property
    def cost(self) -> dict[str, Any]:
        return {
            "estimated": self.estimated,
            "actual": self.actual,
            "billed_failures": self.failure_billed,
            "currency": self.currency,
        }

    def model_dump_row(self) -> dict[str, Any]:
        row = self.model_dump(mode="json")
        row["cost"] = self.cost
        return row


class BatchReport(BaseModel):
    """Every job's outcome, in manifest order, and the totals."""

    jobs: list[BatchJobReport]
    interrupted: bool = False

    @property
    def totals(self) -> dict[str, Any]:
        by_route: dict[str, dict[str, float]] = {}
        for job in self.jobs:
            route = by_route.setdefault(job.route, {"jobs": 0, "estimated": 0.0, "actual": 0.0, "failure_billed": 0.0})
            route["jobs"] += 1
            for name, value in (
                ("estimated", job.estimated),
                ("actual", job.actual),
                ("failure_billed", job.failure_billed),
            ):
                route[name] = money.total([route[name], value])
        states: dict[str, int] = {}
        for job in self.jobs:
            states[job.state] = states.get(job.state, 0) + 1
        return {
            "jobs": len(self.jobs),
            "states": states,
            "estimated": money.total(j.estimated for j in self.jobs),
            "actual": money.total(j.actual for j in self.jobs),
            "failure_billed": money.total(j.failure_billed for j in self.jobs),
            "routes": by_route,
            "interrupted": self.interrupted,
        }

    @property
    def ok(self) -> bool:
        return all(job.state == TERMINAL_OK for job in self.jobs)

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON document: ``jobs`` (one per row) and ``totals``."""
        return {"jobs": [job.model_dump_row() for job in self.jobs], "totals": self.totals}

    def write(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write the report as JSON and as CSV next to each other (``PATH.json`` and ``PATH.csv``)."""
        base = Path(path).expanduser()
        base.parent.mkdir(parents=True, exist_ok=True)
        stem = base.with_suffix("") if base.suffix in (".json", ".csv") else base
        as_json, as_csv = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".csv")
        as_json.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        with as_csv.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for job in self.jobs:
                row = job.model_dump(mode="json")
                row["error"] = f"{job.error['type']}: {job.error['message']}" if job.error else ""
                sync = job.sync or {}
                row.update(lse_c=sync.get("lse_c"), lse_d=sync.get("lse_d"), av_offset=sync.get("av_offset"))
                row["sync_gate"] = sync.get("gate")
                writer.writerow({column: row.get(column) for column in CSV_COLUMNS})
        return [as_json, as_csv]


def earlier_billed(result: LipSyncResult) -> float:
    """What the earlier routes' failed jobs of a fallback run were billed (at their worst case): a row and
    the live spend count them with the job, since the job's own record holds only its last route's cost."""
    costs = [entry.get("cost") or {} for entry in result.record.fallback_from]
    return money.total(money.total([c.get("billed_failures"), c.get("billed_unknown")]) for c in costs)


def job_report(item: BatchItem, outcome: Outcome, journal: Journal) -> BatchJobReport:
    """A row of the report from a job's outcome; for an error, the job's record (if it was claimed) says
    what state it is in and what it cost."""
    estimated = item.estimate.amount if item.estimate is not None else 0.0
    if isinstance(outcome, (LipSyncResult, SyncQualityFailed)):
        result = outcome.result if isinstance(outcome, SyncQualityFailed) else outcome
        scores = result.sync_scores
        return BatchJobReport(
            line=item.line,
            job_id=result.job_id,
            route=result.route,
            state="failed-quality" if isinstance(outcome, SyncQualityFailed) else result.record.state,
            estimated=result.cost.estimated,
            actual=result.cost.actual,
            failure_billed=money.total([result.cost.billed_failures, earlier_billed(result)]),
            output_path=str(result.output_path) if result.output_path else None,
            route_choice=result.record.route_choice or item.choice,
            error=outcome.to_dict() if isinstance(outcome, SyncQualityFailed) else None,
            sync=scores.model_dump(include={"lse_c", "lse_d", "av_offset", "gate", "error"}) if scores else None,
            result=result,
        )
    record = journal.get(outcome.job_id) if outcome.job_id else None
    state = (
        "not_started"
        if isinstance(outcome, NotStarted)
        else "cancelled"
        if isinstance(outcome, JobCancelled)
        else "failed"
    )
    if record is not None:
        state = f"{record.state} (interrupted)" if record.interrupted else record.state
    return BatchJobReport(
        line=item.line,
        job_id=outcome.job_id,
        route=item.route,
        state=state,
        estimated=record.cost.estimated if record else estimated,
        actual=record.cost.actual if record else None,
        failure_billed=record.cost.billed_failures if record else 0.0,
        output_path=None,
        route_choice=item.choice,
        error=outcome.to_dict(),
    )


class Tracker:
    """Live counts for a progress display: done, failed, running, money so far, and an ETA.

    The ETA divides the expected time of what is left by each route's concurrency; once jobs have
    finished, their measured times replace the estimates.
    """

    def __init__(self, items: list[BatchItem], limits: dict[str, int]) -> None:
        self.items = items
        self.limits = limits
        self.started_at = time.monotonic()
        self.running: dict[int, str] = {}
        self.finished: dict[int, Outcome] = {}
        self.spent = 0.0
        self._began: dict[int, float] = {}
        self._took: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def started(self, item: BatchItem) -> None:
        with self._lock:
            self.running[item.index] = "starting"
            self._began[item.index] = time.monotonic()

    def progress(self, item: BatchItem, message: str, fraction: float | None) -> None:
        with self._lock:
            if item.index in self.running:
                self.running[item.index] = message

    def finished_item(self, item: BatchItem, outcome: Outcome, cost: float) -> None:
        with self._lock:
            self.running.pop(item.index, None)
            self.finished[item.index] = outcome
            self.spent = money.total([self.spent, cost])
            began = self._began.pop(item.index, None)
            if began is not None and isinstance(outcome, LipSyncResult):
                self._took.setdefault(item.route, []).append(time.monotonic() - began)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            done = sum(1 for o in self.finished.values() if isinstance(o, LipSyncResult))
            failed = len(self.finished) - done
            left: dict[str, float] = {}
            for item in self.items:
                if item.index in self.finished:
                    continue
                took = self._took.get(item.route)
                guess = (
                    (sum(took) / len(took))
                    if took
                    else (
                        item.estimate.expected_wall_seconds
                        if item.estimate and item.estimate.expected_wall_seconds
                        else 60.0
                    )
                )
                left[item.route] = left.get(item.route, 0.0) + guess
            eta = max((seconds / max(1, self.limits.get(route, 1)) for route, seconds in left.items()), default=0.0)
            return {
                "total": len(self.items),
                "done": done,
                "failed": failed,
                "running": len(self.running),
                "spent": self.spent,
                "elapsed": time.monotonic() - self.started_at,
                "eta": eta,
            }
