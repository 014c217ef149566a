"""The Ray executor: local-route jobs on a pool of Ray actors that keep the models loaded, across machines.

Where each part of a job runs, and why (docs/scale.md says the same for users):

* **The driver runs every job's bookkeeping**: the client's checks, the journal claim, every record write,
  the output file. It does so on the same threads as :class:`~.executor.ThreadExecutor` (the driver's
  "light tasks", at most ``limits[route]`` at once per route), so the exactly-once rules of the client and
  of the hosted-route template hold unchanged: one SQLite journal on one machine, one owner per job.
* **Hosted jobs stay on the driver.** They spend their time waiting on a provider's HTTP API; a thread costs
  nothing while it waits, their credentials never leave the driver, and their inputs are read where the
  manifest is. Sending them to remote workers would buy no speed, would spread the secrets over the cluster,
  and would put every ``submitting``/``submitted`` write on a network hop before the submit it guards.
* **Local jobs' model work runs on the actors.** The driver's local route hands a claimed job's inputs to
  an idle actor and waits; the actor returns the finished file's bytes and the model facts, and the driver
  writes them (file and record). An actor that dies mid-job wrote nothing: the driver records the lost
  attempt, the pool replaces the actor, and the job runs again on another one, under the same claim.
* With ``segment_seconds``, a local job longer than that is split at chunk boundaries
  (:mod:`latentsync_routes.local.segments`) and its segments run on several actors at once.

``ray`` is imported only when a run needs the pool (``pip install 'latentsync-routes[ray]'``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from ..errors import ConfigurationError, JobCancelled, LocalRouteError, WorkerLost
from ..routes.local.route import DEFAULT_SEED, LocalRoute
from ..types import MediaSource
from ._ray_pool import ActorPool, Member
from ._ray_worker import Inputs, WorkerResult
from .executor import BatchEvents, BatchItem, Outcome, StopSignal, ThreadExecutor

if TYPE_CHECKING:
    from ..config import Settings
    from ..routes.base import JobContext
    from .executor import BatchClient

__all__ = ["RayExecutor", "RayLocalRoute"]


def import_ray() -> Any:
    """The ``ray`` module, or a typed error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "the Ray executor needs the 'ray' package: pip install 'latentsync-routes[ray]'", route="local"
        ) from None
    return ray


class RayExecutor:
    """Runs a batch with local-route jobs on Ray actors and hosted jobs on the driver's threads.

    ``address``: ``None`` joins the Ray of this process or starts a local one; ``"auto"`` an already started
    cluster; ``"ray://HOST:PORT"`` a remote one through Ray Client. ``local_actors``: pool size (default: one
    per GPU in the cluster, each with ``num_gpus=1``; one actor with ``cpus_per_actor`` CPUs where the cluster
    has no GPU). ``actor_setup`` runs once in each actor before its first job (a picklable function, e.g. one
    that registers an application's own model set). ``ship_inputs=False`` passes paths instead of bytes, for
    clusters whose nodes all see the inputs at the same paths. ``segment_seconds`` splits local jobs longer
    than that over several actors. A job whose actor dies runs again on another, at most ``max_attempts``
    times in all. An actor that cannot start within ``start_timeout_s`` (the cluster lacks the GPUs or CPUs
    asked for) fails the run with a :class:`ConfigurationError` before any local job starts.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        local_actors: int | None = None,
        cpus_per_actor: float = 1.0,
        use_gpus: bool | None = None,
        actor_setup: Callable[[], Any] | None = None,
        ship_inputs: bool = True,
        segment_seconds: float | None = None,
        max_attempts: int = 3,
        start_timeout_s: float = 300.0,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if local_actors is not None and local_actors < 1:
            raise ValueError(f"local_actors must be at least 1, got {local_actors}")
        if segment_seconds is not None and not (segment_seconds > 0 and math.isfinite(segment_seconds)):
            raise ValueError(f"segment_seconds must be a positive number, got {segment_seconds}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.address = address
        self.local_actors = local_actors
        self.cpus_per_actor = cpus_per_actor
        self.use_gpus = use_gpus
        self.actor_setup = actor_setup
        self.ship_inputs = ship_inputs
        self.segment_seconds = segment_seconds
        self.max_attempts = max_attempts
        self.start_timeout_s = start_timeout_s
        self.init_options = dict(init_options or {})
        self._pool: ActorPool | None = None
        self._started_ray = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, local_actors={self.local_actors!r})"

    # -- the pool ----------------------------------------------------------------------------------------
    def pool(self, settings: Settings) -> ActorPool:
        """The actor pool, started on first use (joining or starting Ray first)."""
        with self._lock:
            if self._pool is None:
                ray = import_ray()
                if not ray.is_initialized():
                    ray.init(address=self.address, **self.init_options)
                    self._started_ray = True
                gpus = int(ray.cluster_resources().get("GPU", 0))
                on_gpu = gpus >= 1 if self.use_gpus is None else self.use_gpus
                options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
                if not on_gpu:
                    options = {"num_cpus": self.cpus_per_actor}
                size = self.local_actors or (gpus if on_gpu else 1)
                fields = {"local_version": settings.local_version, "local_device": settings.local_device}
                self._pool = ActorPool(
                    ray, size, options, fields, self.actor_setup, start_timeout_s=self.start_timeout_s
                )
            return self._pool

    def workers(self) -> dict[str, Any]:
        """The live actors' handles by name (empty before the first local job)."""
        return {} if self._pool is None else self._pool.members()

    def close(self) -> None:
        """Stop the actors (their models are freed), and Ray itself if this executor started it."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if self._started_ray:
            import_ray().shutdown()
            self._started_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the Executor protocol ---------------------------------------------------------------------------
    def run(
        self,
        client: BatchClient,
        items: Sequence[BatchItem],
        *,
        limits: Mapping[str, int],
        events: BatchEvents,
        stop: StopSignal,
    ) -> dict[int, Outcome]:
        """Every item's outcome by index; the local ones' model work on the pool (see the module docstring).

        The local route's limit, when ``limits`` has none, is the pool's size.
        """
        if not any(item.route == "local" for item in items):
            return ThreadExecutor().run(client, items, limits=limits, events=events, stop=stop)
        pool = self.pool(client.settings)
        route = RayLocalRoute(settings=client.settings, pool=pool, ship_inputs=self.ship_inputs,
                              segment_seconds=self.segment_seconds, max_attempts=self.max_attempts)  # fmt: skip
        effective = {**limits, "local": limits.get("local", pool.size)}
        with client.using_route("local", route):
            return ThreadExecutor().run(client, items, limits=effective, events=events, stop=stop)


class RayLocalRoute(LocalRoute):
    """The local route with its model work sent to the actor pool; all else is :class:`LocalRoute`'s."""

    def __init__(
        self, *, settings: Settings, pool: ActorPool, ship_inputs: bool = True, segment_seconds: float | None = None,
        max_attempts: int = 3,
    ) -> None:  # fmt: skip
        super().__init__(settings=settings)
        self.pool = pool
        self.ship_inputs = ship_inputs
        self.segment_seconds = segment_seconds
        self.max_attempts = max_attempts

    @override
    def availability(self) -> str | None:
        return None  # the workers said so when they started (the driver needs no torch)

    @override
    def choice(self, dtype: str | None = None) -> Any:
        return self.pool.choice  # what the workers run on (their device and dtype), not what this machine has

    def _inputs(self, job: JobContext) -> Inputs:
        """The job's inputs as bytes (Ray puts large call arguments in its object store), or shared paths."""

        def one(source: MediaSource, role: str) -> tuple[bytes | str, str]:
            name = source.name or f"{role}.bin"
            if source.kind == "bytes" and source.data is not None:
                return source.data, name
            if source.kind == "path" and source.path is not None:
                path = Path(source.path)
                return (path.read_bytes() if self.ship_inputs else str(path.resolve())), path.name
            from ..errors import InputError

            raise InputError(
                f"the local route reads local files or bytes; download {source.describe()} first", route="local"
            )

        (video, video_name), (audio, audio_name) = one(job.request.video, "video"), one(job.request.audio, "audio")
        return Inputs(video=video, audio=audio, video_name=video_name, audio_name=audio_name)

    def _on_members(self, job: JobContext, what: str, send: Callable[[Member, str], Any]) -> WorkerResult:
        """Run ``send`` on one member after another until one answers; each lost member is a recorded attempt."""
        from ..retry import record_attempt

        for attempt in range(1, self.max_attempts + 1):
            member = self.pool.acquire(job.cancel_requested)
            token = f"{job.job_id}-{uuid.uuid4().hex[:8]}"
            job.report(f"{what} on Ray worker {member.name}", None)
            try:
                result = self.pool.call(member, send(member, token), token=token, report=job.report,
                                        cancelled=job.cancel_requested)  # fmt: skip
            except WorkerLost as exc:
                record_attempt(job, "run", ok=False, error=exc)
                if attempt == self.max_attempts:
                    raise LocalRouteError(
                        f"{exc.message}; gave up after {attempt} workers died on this job", route="local"
                    ) from None
                job.report(f"{exc.message}: running it again on another worker", None)
                continue
            self.pool.release(member)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    @override
    def run_model(self, job: JobContext, choice: Any, params: dict[str, Any], output: Path) -> Path:
        """The job's model work on a pool member (split over several when ``segment_seconds`` allows), its
        output written here; everything around it is :meth:`LocalRoute.execute`'s, run on the driver."""
        inputs = self._inputs(job)
        seed = int(params["seed"]) if params.get("seed") is not None else DEFAULT_SEED
        segments = self._segments(job)
        if segments > 1:
            return self._run_split(job, inputs, params, seed, segments, output)
        result = self._on_members(job, "running", lambda m, token: m.handle.run.remote(
            token, inputs, params, job.remaining()))  # fmt: skip
        if not result.ok:
            raise result.error()
        job.mark(model_version=result.model_version, weights_licence=result.weights_licence)
        _write_atomically(output, result.output or b"")
        return output

    def _segments(self, job: JobContext) -> int:
        if self.segment_seconds is None or self.pool.size < 2:
            return 1
        return max(1, math.ceil(job.audio_info.duration / self.segment_seconds))

    def _run_split(
        self, job: JobContext, inputs: Inputs, params: dict[str, Any], seed: int, segments: int, output: Path
    ) -> Path:
        """Plan on one worker, run the segments on all of them, join here (docs/scale.md)."""
        from ..local.segments import SegmentPlan, join_segments

        ray = self.pool.ray
        planned = self._on_members(job, "planning the split", lambda m, _: m.handle.plan.remote(
            inputs, params, segments))  # fmt: skip
        if not planned.ok:  # e.g. a missing face under on_missing_face="error": before any model time
            raise planned.error()
        plan: SegmentPlan = planned.extra["plan"]
        plan_ref, video_ref = ray.put(plan), ray.put(inputs.video)  # once, for every segment
        count = len(plan.bounds)
        job.report(f"split into {count} segments of {plan.total} frames", None)

        def segment(number: int) -> Any:
            if job.cancel_requested():
                raise JobCancelled("cancelled by the caller", route="local")
            result = self._on_members(job, f"segment {number + 1}/{count}", lambda m, token: m.handle.segment.remote(
                token, plan_ref, number, video_ref, inputs.video_name, params, seed, job.remaining()))  # fmt: skip
            if not result.ok:
                raise result.error()
            job.report(f"segment {number + 1}/{count} done on {result.worker}", None)
            return result.extra["frames"]

        folder = Path(tempfile.mkdtemp(prefix="latentsync-join-"))
        try:
            audio = _driver_path(job.request.audio, folder)
            with ThreadPoolExecutor(max_workers=count, thread_name_prefix="latentsync-segment") as threads:
                futures: list[Future[Any]] = [threads.submit(segment, k) for k in range(count)]
                try:
                    join_segments(plan, (f.result() for f in futures), output, audio)
                    job.mark(model_version=planned.model_version, weights_licence=planned.weights_licence)
                finally:
                    for future in futures:
                        future.cancel()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return output


def _driver_path(source: MediaSource, folder: Path) -> Path:
    if source.kind == "path" and source.path is not None:
        return Path(source.path)
    target = folder / "audio.bin"
    target.write_bytes(source.data or b"")
    return target


def _write_atomically(path: Path, data: bytes) -> None:
    """The output appears whole or not at all (as the in-process local route's writer does it)."""
    partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
