"""Where a batch's jobs run: the executor seam, and the default executor (threads in this process).

An executor only decides *where* each job's ``run`` happens. Everything that makes a job safe to run twice
(the journal claim, the ``submitting`` state, lookups after an ambiguous submit) lives in the client and
the hosted-route template, so an executor that loses a worker can simply run the job again through the
same client: a finished job returns its result, a started hosted job carries on its provider job.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import LatentSyncError, NotStarted, RouteError
from ..types import CostEstimate, LipSyncResult

if TYPE_CHECKING:
    import os
    from contextlib import AbstractContextManager

    from typing_extensions import Unpack

    from ..config import Settings
    from ..journal import Journal
    from ..options import JobOptions, MediaLike, RunOptions
    from ..policy import CheckResult
    from ..routes.base import Route

#: what one job ended with: its result, or the typed error that stopped it
Outcome = LipSyncResult | LatentSyncError


class BatchClient(Protocol):
    """What a batch needs of the client (``LipSyncClient`` is one): each row checked and priced (``assess``,
    or ranked over the routes), run, looked up in the journal; the local route swapped for an executor's own.

    Batches are built on the client's one data path but sit below the facade that offers ``run_many``, so
    they name only these members."""

    @property
    def settings(self) -> Settings: ...

    @property
    def default_consent(self) -> str | None: ...

    @property
    def journal(self) -> Journal: ...

    def route(self, name: str | None = None) -> Route: ...

    def using_route(self, name: str, route: Route) -> AbstractContextManager[None]: ...

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
    ) -> tuple[list[CheckResult], CostEstimate]: ...

    def run(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> LipSyncResult: ...


@dataclass(frozen=True)
class BatchItem:
    """One checked, priced job of a batch, ready to run.

    ``options`` are keyword arguments for :meth:`LipSyncClient.run` (consent, seed, guidance_scale,
    loop_mode, inference_steps); ``route`` is a concrete route name (``cheapest`` is resolved before).
    """

    index: int  #: position in the manifest (0-based)
    line: int  #: the manifest line the job came from, for messages
    video: str
    audio: str
    output: Path
    route: str
    options: Mapping[str, Any] = field(default_factory=dict)
    estimate: CostEstimate | None = None
    #: why this route was chosen (``cheapest``), kept in the job's record
    choice: str | None = None
    #: the job's worst case over every route it may move on to (``fallback``); ``None``: the estimate's high end
    high: float | None = None


class BatchEvents(Protocol):
    """What an executor reports while it runs (called from worker threads; implementations lock)."""

    def started(self, item: BatchItem) -> None: ...

    def progress(self, item: BatchItem, message: str, fraction: float | None) -> None: ...

    def finished(self, item: BatchItem, outcome: Outcome) -> None: ...


@dataclass
class StopSignal:
    """Ctrl-C for a batch: ``requested`` stops new submits; with ``cancel_running`` running jobs are cancelled."""

    requested: threading.Event = field(default_factory=threading.Event)
    cancel_running: bool = False

    def stop(self, *, cancel_running: bool) -> None:
        self.cancel_running = cancel_running
        self.requested.set()


class Executor(Protocol):
    """Runs the items and returns each one's outcome by ``BatchItem.index``.

    Contract: every item gets exactly one outcome (``NotStarted`` if ``stop`` came first); per-route
    concurrency never exceeds ``limits[route]``; ``events.started``/``finished`` are called once per
    started item; when ``stop.cancel_running`` is set, running jobs get their ``cancel_event`` set.
    """

    def run(
        self,
        client: BatchClient,
        items: Sequence[BatchItem],
        *,
        limits: Mapping[str, int],
        events: BatchEvents,
        stop: StopSignal,
    ) -> dict[int, Outcome]: ...


def run_item(client: BatchClient, item: BatchItem, events: BatchEvents, cancel: threading.Event) -> Outcome:
    """Run one item through the client (claim, route, record) and catch what stops it as its outcome."""
    events.started(item)
    try:
        # ``run`` is ``run_prepared(prepare(...))``: the batch's jobs are prepared jobs run by the client's runner
        outcome: Outcome = client.run(
            item.video,
            item.audio,
            item.output,
            route=item.route,
            cancel_event=cancel,
            progress=lambda message, fraction: events.progress(item, message, fraction),
            **dict(item.options),
        )
    except LatentSyncError as exc:
        outcome = exc
    except Exception as exc:  # noqa: BLE001 - one job's crash must not end the batch; it is reported as its outcome
        outcome = RouteError(f"unexpected {type(exc).__name__}: {exc}", route=item.route)
    events.finished(item, outcome)
    return outcome


class ThreadExecutor:
    """Jobs as threads of this process, at most ``limits[route]`` at once per route.

    Hosted jobs spend their time waiting on HTTP, and local jobs on one GPU take turns anyway (the local
    route's own limit is 1 by default), so threads are all a single machine needs.
    """

    def run(
        self,
        client: BatchClient,
        items: Sequence[BatchItem],
        *,
        limits: Mapping[str, int],
        events: BatchEvents,
        stop: StopSignal,
    ) -> dict[int, Outcome]:
        gates = {route: threading.Semaphore(max(1, limits.get(route, 1))) for route in {i.route for i in items}}
        running: dict[int, threading.Event] = {}
        outcomes: dict[int, Outcome] = {}
        guard = threading.Lock()

        def one(item: BatchItem) -> None:
            with gates[item.route]:
                cancel = threading.Event()
                with guard:
                    if stop.requested.is_set():
                        outcomes[item.index] = NotStarted("the batch was stopped before this job started")
                        return
                    running[item.index] = cancel
                try:
                    outcome = run_item(client, item, events, cancel)
                finally:
                    with guard:
                        running.pop(item.index, None)
                with guard:
                    outcomes[item.index] = outcome

        done = threading.Event()

        def watch() -> None:  # turns a stop with cancel into the running jobs' cancel events
            while not done.is_set():
                if stop.requested.wait(0.2):
                    break
            if stop.cancel_running and not done.is_set():
                with guard:
                    for cancel in running.values():
                        cancel.set()

        watcher = threading.Thread(target=watch, daemon=True, name="batch-stop")
        watcher.start()
        workers = sum(max(1, limits.get(route, 1)) for route in gates) or 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentsync-batch") as pool:
            try:
                for future in [pool.submit(one, item) for item in items]:
                    future.result()
            finally:
                done.set()
        return outcomes
