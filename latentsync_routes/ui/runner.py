"""A job run from the page: a prepared job run by the client's runner in a thread, its progress, and cancel.

Why a thread: the page must keep answering (live progress, the cancel button) while the job runs, and the
client's runner blocks. The run's own ``progress`` callback gives the route's messages; the journal gives
the job's state and what it has cost so far (the record is found by the output path, which is unique to the
staged folder). Cancel sets the run's ``cancel_event``: the route cancels its provider job and the record
says so.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LatentSyncError, SyncQualityFailed
from ..job_runner import RunControls
from ..sync_gate import gate_of
from ..types import CostEstimate, JobRecord, LipSyncResult
from . import state

if TYPE_CHECKING:
    from ..client import LipSyncClient
    from .state import Inputs

_POSITION = re.compile(r"position\s+(\d+)")


@dataclass(frozen=True)
class Snapshot:
    """What the progress panel shows at one moment."""

    route: str
    state: str
    message: str
    fraction: float | None
    queue_position: int | None
    elapsed_s: float
    expected_s: float | None
    cost_so_far: float
    estimate: float
    done: bool
    error: str | None
    job_id: str | None


@dataclass
class RunHandle:
    """One job started from the page."""

    route: str
    inputs: Inputs
    estimate: CostEstimate
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    result: LipSyncResult | None = None
    error: str | None = None
    _messages: list[tuple[str, float | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, message: str, fraction: float | None) -> None:
        with self._lock:
            self._messages.append((message, fraction))

    def last(self) -> tuple[str, float | None, int | None]:
        """The latest message, the latest known fraction, and the latest queue position reported."""
        with self._lock:
            messages = list(self._messages)
        message = messages[-1][0] if messages else "starting"
        fraction = next((f for _, f in reversed(messages) if f is not None), None)
        found = _POSITION.search(message)  # only while the latest word from the provider is a queue place
        position = int(found.group(1)) if found else None
        return message, fraction, position

    def record(self, client: LipSyncClient) -> JobRecord | None:
        """This run's journal record (none until the job is claimed)."""
        if self.result is not None:
            return self.result.record
        output = str(self.inputs.output)
        return next((r for r in client.journal.list(limit=50) if r.output_path == output), None)

    def snapshot(self, client: LipSyncClient) -> Snapshot:
        message, fraction, position = self.last()
        record = self.record(client)
        state = record.state if record is not None else "starting"
        if record is not None and record.state in ("fetched", "failed", "cancelled"):
            position = None
        cost = 0.0
        if record is not None:
            cost = (record.cost.actual or 0.0) + record.cost.billed_failures
        return Snapshot(
            route=self.route,
            state=state,
            message=message,
            fraction=fraction,
            queue_position=position,
            elapsed_s=time.monotonic() - self.started,
            expected_s=self.estimate.expected_wall_seconds,
            cost_so_far=cost,
            estimate=self.estimate.amount,
            done=self.done.is_set(),
            error=self.error,
            job_id=record.job_id if record is not None else None,
        )


class Runs:
    """The runs of one page, by browser session: at most one at a time per session."""

    def __init__(self, client: LipSyncClient) -> None:
        self.client = client
        self._by_session: dict[str, RunHandle] = {}
        self._lock = threading.Lock()

    def start(
        self,
        session: str,
        route: str,
        inputs: Inputs,
        estimate: CostEstimate,
        consent: str | None,
        *,
        evaluate: bool = False,
    ) -> RunHandle:
        """Run a job in a thread. ``evaluate``: score the output; no SyncNet weights refuses it here, before
        any upload (the weights come from the settings only: the page never names a server file)."""
        gate = gate_of(self.client.settings, {"evaluate": True} if evaluate else {})
        handle = RunHandle(route=route, inputs=inputs, estimate=estimate)
        with self._lock:
            running = self._by_session.get(session)
            if running is not None and not running.done.is_set():
                raise LatentSyncError("a job is already running on this page; cancel it or wait for it")
            self._by_session[session] = handle

        def work() -> None:
            try:
                job = self.client.prepare(
                    inputs.video,
                    inputs.audio,
                    Path(inputs.output),
                    route=route,
                    consent=consent,
                    face_check=state.face_check_for(inputs),
                )
                controls = RunControls(progress=handle.progress, cancel_event=handle.cancel_event)
                result = self.client.run_prepared(job, controls)
                handle.result = gate.judge(result, self.client.journal) if gate else result
            except SyncQualityFailed as exc:  # paid and fetched, under the gate: shown with its scores
                handle.result, handle.error = exc.result, exc.message
            except LatentSyncError as exc:
                handle.error = f"{type(exc).__name__}: {exc.message}"
            except Exception as exc:  # noqa: BLE001 - shown on the page; the journal has the record
                handle.error = f"{type(exc).__name__}: {exc}"
            finally:
                handle.done.set()

        threading.Thread(target=work, name="latentsync-ui-run", daemon=True).start()
        return handle

    def get(self, session: str) -> RunHandle | None:
        with self._lock:
            return self._by_session.get(session)

    def cancel(self, session: str) -> bool:
        """Ask this session's running job to stop; False when nothing runs."""
        handle = self.get(session)
        if handle is None or handle.done.is_set():
            return False
        handle.cancel_event.set()
        return True

    def running_job(self, job_id: str) -> RunHandle | None:
        """The page's run of ``job_id``, if it is running here now (cancel it by its event, not the journal)."""
        with self._lock:
            handles = list(self._by_session.values())
        for handle in handles:
            if handle.done.is_set():
                continue
            record = handle.record(self.client)
            if record is not None and record.job_id == job_id:
                return handle
        return None
