"""Many jobs at once: a manifest checked and priced whole before anything runs, then run by an executor.

``LipSyncClient.run_many`` / ``AsyncLipSyncClient.map`` and ``latentsync-routes batch`` are the front
doors; this package holds the manifest (``manifest``), the plan (``plan``), the executors (``executor``,
``ray_executor``) and the report (``report``).
"""

from __future__ import annotations

from ..errors import ManifestError, NotStarted
from .executor import BatchItem, Executor, StopSignal, ThreadExecutor
from .manifest import BatchJob, read_manifest
from .plan import BatchPlan, plan_batch
from .report import BatchJobReport, BatchReport
from .runner import execute_plan, run_batch

__all__ = [
    "BatchItem",
    "BatchJob",
    "BatchJobReport",
    "BatchPlan",
    "BatchReport",
    "Executor",
    "ManifestError",
    "NotStarted",
    "StopSignal",
    "ThreadExecutor",
    "execute_plan",
    "plan_batch",
    "read_manifest",
    "run_batch",
]
