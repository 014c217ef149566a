"""Jobs of a prediction-style fake that end after a number of status polls: inspect, hold, release, end now.

The Replicate and WaveSpeed fakes share this: both answer a prediction's status polls with "processing"
``processing_polls`` times before it ends, and tests hold every job running (``hold_jobs``), let them end
(``release_jobs``) or end one at once (``complete``).
"""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar


class _Ending(Protocol):
    @property
    def terminal(self) -> bool: ...


P = TypeVar("P", bound=_Ending)


class PolledJobs(Generic[P]):
    """Mixed into a fake server that keeps ``_predictions`` under ``_lock`` and ends one with ``_finish``."""

    _lock: threading.RLock
    _predictions: dict[str, P]
    processing_polls: int
    _held_processing_polls: int | None = None

    def _finish(self, prediction: P) -> None:
        raise NotImplementedError

    @property
    def predictions(self) -> dict[str, P]:
        """Snapshot of predictions by id; ``len(fake.predictions)`` is how many were created."""
        with self._lock:
            return dict(self._predictions)

    @property
    def jobs(self) -> dict[str, P]:
        """The predictions, under the name every fake uses for its provider jobs."""
        return self.predictions

    def hold_jobs(self) -> None:
        """Keep every job running (its status polls never end it) until :meth:`release_jobs`."""
        with self._lock:
            if self._held_processing_polls is None:
                self._held_processing_polls = self.processing_polls
            self.processing_polls = 10**9

    def release_jobs(self) -> None:
        """Undo :meth:`hold_jobs`: jobs end after their polls again, and those already held end now."""
        with self._lock:
            if self._held_processing_polls is not None:
                self.processing_polls, self._held_processing_polls = self._held_processing_polls, None
        for job_id, job in self.jobs.items():
            if not job.terminal:
                self.complete(job_id)

    def complete(self, prediction_id: str) -> P:
        """End a prediction now, whatever its poll count (also releases a blocked ``Prefer: wait`` create)."""
        with self._lock:
            prediction = self._predictions[prediction_id]
            if not prediction.terminal:
                self._finish(prediction)
            return prediction
