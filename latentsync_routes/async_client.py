"""``AsyncLipSyncClient``: the same client for asyncio code, bounded per route, cancellable.

Jobs spend nearly all their time waiting on a provider, so each route gets its own semaphore (sized from
the route's declared ``default_concurrency`` unless given) and the client owns a thread pool as large as
the sum of the limits (the default asyncio pool, sized by CPU count, would cap concurrency below them).
Cancelling an awaiting ``run`` cancels the provider job and records it before the task ends.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .client import LipSyncClient
from .handles import Job
from .options import BatchOptions, JobOptions, MediaLike, RunOptions
from .policy import CheckResult
from .routes.base import ProgressCallback, RouteInfo, load_route_class, route_names
from .types import CostEstimate, JobRecord, LipSyncResult

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from typing_extensions import Unpack

    from .batch.report import BatchReport

T = TypeVar("T")
#: How long a cancelled ``run`` waits for its worker to cancel the provider job and journal it.
CANCEL_GRACE_S = 30.0


def _default_limit(name: str) -> int:
    info = getattr(load_route_class(name), "INFO", None)
    return int(getattr(info, "default_concurrency", 1 if name == "local" else 4))


class AsyncLipSyncClient:
    """Every method of :class:`LipSyncClient` as a coroutine. Close it with ``aclose()`` or ``async with``."""

    def __init__(self, route: str | None = None, *, concurrency: dict[str, int] | None = None, **kwargs: Any) -> None:
        self.sync = LipSyncClient(route, **kwargs)
        self._limits = {name: _default_limit(name) for name in route_names()}
        self._limits.update(concurrency or {})
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=sum(self._limits.values()) + 4, thread_name_prefix="latentsync-routes"
        )

    async def __aenter__(self) -> AsyncLipSyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the client's thread pool; jobs not yet started are dropped (running ones finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _semaphore(self, route: str) -> asyncio.Semaphore:
        if route not in self._semaphores:
            self._semaphores[route] = asyncio.Semaphore(self._limits.get(route, 4))
        return self._semaphores[route]

    async def in_thread(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` on the client's thread pool, awaited: how every method here and every
        :class:`AsyncJob` runs the blocking client, and how an application can run its own blocking step beside
        its jobs without starving the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(func, *args, **kwargs))

    async def routes(self) -> list[RouteInfo]:
        """Every registered route's declared facts (:meth:`LipSyncClient.routes`)."""
        return await self.in_thread(self.sync.routes)

    async def estimate(
        self, video: MediaLike, audio: MediaLike, *, route: str | None = None, **options: Unpack[JobOptions]
    ) -> CostEstimate:
        """The price on one route, ``refused`` saying why when the route would refuse the inputs
        (:meth:`LipSyncClient.estimate`)."""
        return await self.in_thread(self.sync.estimate, video, audio, route=route, **options)

    async def estimate_all(self, video: MediaLike, audio: MediaLike) -> list[CostEstimate]:
        """Estimates on every route, each marked ``refused`` where that route would refuse the inputs."""
        return await self.in_thread(self.sync.estimate_all, video, audio)

    async def check(
        self,
        video: MediaLike,
        audio: MediaLike,
        *,
        route: str | None = None,
        consent: str | None = None,
        deadline_seconds: float | None = None,
        face_check: bool | None = None,
    ) -> list[CheckResult]:
        """The checklist ``run`` enforces, without running anything (:meth:`LipSyncClient.check`)."""
        return await self.in_thread(
            self.sync.check,
            video,
            audio,
            route=route,
            consent=consent,
            deadline_seconds=deadline_seconds,
            face_check=face_check,
        )

    async def run(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> LipSyncResult:
        """Run one job; cancelling the awaiting task cancels its provider job (and journals it) first."""
        route = options.get("route") or self.sync.settings.route
        cancel = threading.Event()
        options["cancel_event"] = cancel
        async with self._semaphore(route):
            future = asyncio.get_running_loop().run_in_executor(
                self._executor, partial(self.sync.run, video, audio, output, **options)
            )
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                cancel.set()
                try:
                    await asyncio.wait_for(asyncio.shield(future), timeout=CANCEL_GRACE_S)
                except BaseException:  # noqa: BLE001, S110 - the job's own end (JobCancelled) is expected here
                    pass
                raise

    async def submit(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> AsyncJob:
        """Submit one job and return once the provider holds it (:meth:`LipSyncClient.submit`)."""
        route = options.get("route") or self.sync.settings.route
        async with self._semaphore(route):
            job = await self.in_thread(self.sync.submit, video, audio, output, **options)
        return AsyncJob(job, self)

    async def job(self, id_or_prefix: str) -> AsyncJob:
        """A handle on a journalled job by its id or a unique prefix (:meth:`LipSyncClient.job`)."""
        return AsyncJob(await self.in_thread(self.sync.job, id_or_prefix), self)

    async def handle_webhook(self, route: str, headers: Mapping[str, str], body: bytes) -> AsyncJob:
        """Verify a provider's delivery and carry its job on (:meth:`LipSyncClient.handle_webhook`)."""
        return AsyncJob(await self.in_thread(self.sync.handle_webhook, route, headers, body), self)

    async def map(self, jobs: Any, **options: Unpack[BatchOptions]) -> BatchReport:
        """``run_many`` as a coroutine; cancelling the awaiting task stops the batch and cancels its running jobs."""
        from .batch.executor import StopSignal

        stop = options.get("stop") or StopSignal()
        options["stop"] = stop
        run = partial(self.sync.run_many, jobs, **options)
        future = asyncio.get_running_loop().run_in_executor(self._executor, run)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.stop(cancel_running=True)
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=CANCEL_GRACE_S)
            except BaseException:  # noqa: BLE001, S110 - the batch's own end is expected here
                pass
            raise

    async def resume(self, job_id: str, *, progress: ProgressCallback | None = None, **kwargs: Any) -> LipSyncResult:
        """Carry on a journalled job (:meth:`LipSyncClient.resume`)."""
        return await self.in_thread(self.sync.resume, job_id, progress=progress, **kwargs)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job and its provider job, whoever runs it (:meth:`LipSyncClient.cancel`)."""
        return await self.in_thread(self.sync.cancel, job_id)

    async def delete_job(self, job_id: str, *, delete_output: bool = True) -> JobRecord:
        """Delete a job's output and remote files where allowed (:meth:`LipSyncClient.delete_job`)."""
        return await self.in_thread(self.sync.delete_job, job_id, delete_output=delete_output)


class AsyncJob:
    """:class:`~latentsync_routes.handles.Job` for asyncio code: the same handle, its waits in the client's
    threads. Cancelling an awaiting ``wait`` leaves the job running at the provider (``cancel`` stops it)."""

    def __init__(self, job: Job, client: AsyncLipSyncClient) -> None:
        self.sync = job
        self._client = client

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    @property
    def id(self) -> str:
        return self.sync.id

    @property
    def route(self) -> str:
        return self.sync.route

    @property
    def state(self) -> str:
        return self.sync.state

    @property
    def record(self) -> JobRecord:
        return self.sync.record

    async def status(self) -> JobRecord:
        return await self._client.in_thread(self.sync.status)

    async def wait(self, timeout: float | None = None) -> LipSyncResult:
        return await self._client.in_thread(self.sync.wait, timeout)

    async def cancel(self) -> JobRecord:
        return await self._client.in_thread(self.sync.cancel)

    async def delete(self, *, delete_output: bool = True) -> JobRecord:
        return await self._client.in_thread(self.sync.delete, delete_output=delete_output)
