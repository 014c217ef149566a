"""The local pool: Ray actors that keep the models loaded, handed out one job (or one segment) at a time.

A member that dies (its process, its node, an OOM kill, ``ray.kill``) is replaced by a new actor and never
handed out again; the call that was running on it fails with :class:`WorkerLost` and the caller runs that
work again on another member. Nothing a member does is durable, so running it again is always safe.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, JobCancelled, LocalRouteError, WorkerLost
from ._ray_worker import LocalWorker, WorkerResult

log = logging.getLogger(__name__)

#: seconds between two looks at a running call (progress messages, a cancel, a dead member)
POLL_S = 0.25


@dataclass
class Member:
    """One live actor of the pool."""

    name: str
    handle: Any
    number: int


def lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray's exceptions that mean "the worker is gone", whatever this Ray version calls them."""
    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
             "OutOfMemoryError", "ObjectLostError", "OwnerDiedError")  # fmt: skip
    return tuple(getattr(ray.exceptions, n) for n in names if isinstance(getattr(ray.exceptions, n, None), type))


class ActorPool:
    """``size`` actors built with ``options`` (``num_gpus=1`` or ``num_cpus=...``), started eagerly."""

    def __init__(
        self, ray: Any, size: int, options: Mapping[str, Any], settings_fields: Mapping[str, Any],
        setup: Callable[[], Any] | None, *, start_timeout_s: float = 300.0,
    ) -> None:  # fmt: skip
        if size < 1:
            raise ValueError(f"the local pool needs at least one actor, got {size}")
        self.ray = ray
        self.size = size
        self._cls = ray.remote(LocalWorker).options(max_concurrency=2, **dict(options))
        self._args = (dict(settings_fields), setup)
        self._lost = lost_errors(ray)
        self._options = dict(options)
        self.start_timeout_s = start_timeout_s
        self._numbers = itertools.count()
        self._idle: queue.Queue[Member] = queue.Queue()
        self._live: dict[str, Member] = {}
        self._guard = threading.Lock()
        self.choice: Any = None
        self.replaced = 0
        started = [self._spawn() for _ in range(size)]
        for member in started:
            self._admit(member)

    def _spawn(self) -> tuple[Any, Any, int]:
        number = next(self._numbers)
        handle = self._cls.remote(*self._args)
        return handle, handle.ready.remote(), number

    def _admit(self, spawned: tuple[Any, Any, int]) -> None:
        handle, ready_ref, number = spawned
        try:
            facts = self.ray.get(ready_ref, timeout=self.start_timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            self.ray.kill(handle, no_restart=True)
            raise ConfigurationError(
                f"a Ray worker for the local route did not start within {self.start_timeout_s:g} s: the cluster "
                f"may lack the resources each one asks for ({self._options}); lower local_actors or add nodes",
                route="local",
            ) from None
        if facts["why_not"]:
            raise LocalRouteError(f"a Ray worker cannot run the local route: {facts['why_not']}", route="local")
        if self.choice is None:
            self.choice = facts["choice"]
        member = Member(name=f"local-{number} ({facts['worker']})", handle=handle, number=number)
        with self._guard:
            self._live[member.name] = member
        self._idle.put(member)

    def members(self) -> dict[str, Any]:
        """The live members' handles by name (for inspection, and for tests that kill one)."""
        with self._guard:
            return {name: m.handle for name, m in self._live.items()}

    def acquire(self, cancelled: Callable[[], bool]) -> Member:
        """The next idle member; waits, but gives up with :class:`JobCancelled` once ``cancelled()``."""
        while True:
            try:
                member = self._idle.get(timeout=POLL_S)
            except queue.Empty:
                if cancelled():
                    raise JobCancelled("cancelled while waiting for a free Ray worker", route="local") from None
                continue
            with self._guard:
                if member.name in self._live:
                    return member

    def release(self, member: Member) -> None:
        with self._guard:
            alive = member.name in self._live
        if alive:
            self._idle.put(member)

    def retire(self, member: Member) -> None:
        """Forget a dead member and start a replacement in the background, so the pool keeps its size while
        the lost member's work runs again on the others."""
        with self._guard:
            if self._live.pop(member.name, None) is None:
                return
        log.warning("Ray worker %s died; starting a replacement", member.name)
        try:
            self.ray.kill(member.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is already gone; this only makes sure
            log.debug("killing the dead worker %s failed", member.name)
        threading.Thread(target=self._replace, name="latentsync-ray-replace", daemon=True).start()

    def _replace(self) -> None:
        expected: tuple[type[BaseException], ...] = (*self._lost, ConfigurationError, LocalRouteError)
        try:
            self._admit(self._spawn())
        except expected as exc:  # the pool runs one short
            log.warning("could not replace a Ray worker: %s", exc)
            return
        with self._guard:
            self.replaced += 1

    def call(
        self,
        member: Member,
        ref: Any,
        *,
        token: str = "",
        report: Callable[[str, float | None], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> WorkerResult:
        """Wait for ``ref`` (a call on ``member``), relaying its progress and a cancel; a dead member raises
        :class:`WorkerLost` (and is retired)."""
        seen = 0
        told = False
        try:
            while not self.ray.wait([ref], timeout=POLL_S)[0]:
                if cancelled() and not told:
                    member.handle.cancel.remote(token)
                    told = True
                if token and report is not None:
                    try:
                        fresh = self.ray.get(member.handle.messages.remote(token, seen), timeout=30)
                    except self._lost:
                        break  # the result below says how it ended
                    for message, fraction in fresh:
                        report(message, fraction)
                    seen += len(fresh)
            result: WorkerResult = self.ray.get(ref)
        except self._lost as exc:
            self.retire(member)
            raise WorkerLost(f"Ray worker {member.name} died mid-job ({type(exc).__name__})", route="local") from None
        if report is not None:
            for message, fraction in result.messages[seen:]:
                report(message, fraction)
        return result

    def close(self) -> None:
        with self._guard:
            members = list(self._live.values())
            self._live.clear()
        for member in members:
            try:
                self.ray.kill(member.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - shutting down; a member already gone is fine
                log.debug("could not kill %s", member.name)
