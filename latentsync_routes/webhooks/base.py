"""What every provider's webhook check shares: headers read case-blind, the timestamp window, cached keys and
the record of deliveries already handled.

A delivery is checked before anything is read from its body or written anywhere: a refusal records nothing.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..errors import WebhookSignatureInvalid, WebhookStale

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: the provider job it is about and how the provider says it ended."""

    route: str
    #: what makes this delivery itself unique (a replay of it carries the same): the provider's message id
    delivery_id: str
    request_id: str
    #: ``succeeded``, ``failed`` or ``cancelled`` (the provider's word, mapped), or ``running``
    state: str
    payload: dict[str, Any]


def header(headers: Mapping[str, str], name: str, route: str) -> str:
    """One header's value, whatever the case of its name; a missing one refuses the delivery."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted and value:
            return value
    raise WebhookSignatureInvalid(f"{route} webhook without its {name} header: not a signed delivery", route=route)


def check_timestamp(value: str, *, now: float, tolerance: float, route: str) -> None:
    """Refuse a delivery signed more than ``tolerance`` seconds away from ``now`` (either way)."""
    try:
        signed = float(value)
    except ValueError:
        raise WebhookSignatureInvalid(
            f"{route} webhook timestamp {value[:40]!r} is not a number", route=route
        ) from None
    if not math.isfinite(signed) or abs(now - signed) > tolerance:
        raise WebhookStale(
            f"{route} webhook signed at {value[:20]}, more than {tolerance:g} s from now; refused "
            "(an old delivery replayed, or a clock far off)",
            route=route,
        )


class Cached(Generic[T]):
    """A value fetched from the provider (public keys, a signing secret), kept until it expires.

    ``set`` injects one (tests, or a secret kept elsewhere); ``get(refresh=True)`` fetches again at once
    (a signature no cached key verifies may mean the provider rotated its keys).
    """

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._value: T | None = None
        self._expires = 0.0
        self._pinned = False
        self._lock = threading.Lock()

    def set(self, value: T, ttl: float | None = None) -> None:
        """Use ``value``: for ``ttl`` seconds (then fetched again), or without ``ttl`` for good (pinned: a
        refresh keeps it, so a signature it does not verify is refused without asking the provider)."""
        with self._lock:
            self._value = value
            self._pinned = ttl is None
            self._expires = time.monotonic() + (math.inf if ttl is None else ttl)

    def get(self, *, refresh: bool = False) -> T:
        with self._lock:
            stale = self._value is None or time.monotonic() >= self._expires
            if stale or (refresh and not self._pinned):
                self._value = self._load()
                self._expires = time.monotonic() + self._ttl
            assert self._value is not None  # noqa: S101 - loaded just above
            return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None


class SeenDeliveries:
    """Deliveries already handled, by route and delivery id, in a small SQLite file beside the journal: a
    second arrival of one is a replay (every process of the service shares the file)."""

    #: rows older than this are dropped: past every provider's timestamp window, a replay is refused as stale
    KEEP_S = 24 * 3600.0

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS seen (route TEXT, delivery_id TEXT, at REAL, "
                "PRIMARY KEY (route, delivery_id))"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0)
        db.execute("PRAGMA busy_timeout = 30000")
        return db

    def seen(self, route: str, delivery_id: str) -> bool:
        with closing(self._connect()) as db:
            row = db.execute("SELECT 1 FROM seen WHERE route = ? AND delivery_id = ?", (route, delivery_id)).fetchone()
        return row is not None

    def remember(self, route: str, delivery_id: str) -> None:
        now = time.time()
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR IGNORE INTO seen (route, delivery_id, at) VALUES (?, ?, ?)", (route, delivery_id, now)
            )
            db.execute("DELETE FROM seen WHERE at < ?", (now - self.KEEP_S,))
