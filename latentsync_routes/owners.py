"""Who owns a claimed job, and when its owner counts as dead: the rules the journal's claims follow.

An owner token names the host and process it runs in, so a dead process on this host is recognised at once;
an owner elsewhere is judged by its heartbeat. A caller that cancels a job judges the owner it waits for more
carefully (:class:`CancelWatch`), because taking a job from an owner that is carrying the cancel out would
cancel the provider job twice.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

__all__ = ["CANCEL_ASKED", "CANCEL_NONE", "CANCEL_TAKEN", "CancelWatch", "new_owner", "owner_dead", "process_alive"]

#: The ``cancel_requested`` column of a claim: no cancel; a cancel asked of the owner; the owner took it on.
CANCEL_NONE, CANCEL_ASKED, CANCEL_TAKEN = 0, 1, 2


def new_owner() -> str:
    """An owner token: host and pid (so a dead local process is recognised at once) and a unique tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def process_alive(owner: str) -> bool | None:
    """Whether the owner's process lives: ``None`` when that cannot be seen from here (another host)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def owner_dead(owner: str, heartbeat: float, lease_s: float) -> bool:
    return time.time() - heartbeat > lease_s or process_alive(owner) is False


@dataclass
class CancelWatch:
    """How a caller that cancels a job judges the owner it waits for (the cancel hand-over).

    Only by what it sees itself, on its own clock: the owner is dead when its process is gone from this
    host, or when its claim (heartbeat and cancel flag) stayed the same for a whole lease while this caller
    watched. A heartbeat that was already old at the first look (a stalled process, a clock step, a late
    beat) proves nothing, and the owner gets a lease to take the cancel on. An owner on this host that took
    the cancel on is never taken over while its process lives: it is carrying the cancel out, and taking the
    job from it would cancel the provider job twice and leave it with :class:`ClaimLost`.
    """

    lease_s: float
    _seen: tuple[str, float, int] | None = None
    _since: float = 0.0

    def owner_dead(self, owner: str, heartbeat: float, cancel: int) -> bool:
        alive = process_alive(owner)
        if alive is False:
            return True
        if alive and cancel == CANCEL_TAKEN:
            return False
        now = time.monotonic()
        if self._seen != (owner, heartbeat, cancel):
            self._seen, self._since = (owner, heartbeat, cancel), now
        return now - self._since > self.lease_s
