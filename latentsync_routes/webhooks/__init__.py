"""Verified provider webhooks: ``LipSyncClient.handle_webhook`` checks a delivery here before anything else.

:data:`~.providers.SCHEMES` holds each provider's scheme; :class:`WebhookKeys` caches each provider's keys or
signing secret with its expiry (``set`` injects one); :class:`~.base.SeenDeliveries` refuses a replay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import WebhookRejected
from .base import Cached, Delivery, SeenDeliveries
from .providers import SCHEMES, Scheme


class WebhookKeys:
    """Per route, the provider's webhook keys or secret, fetched on first use and kept until they expire."""

    def __init__(self, source: Callable[[str], tuple[str | None, str | None]]) -> None:
        """``source(route)`` gives the route's base URL override and credential, read when keys are fetched."""
        self._source = source
        self._cached: dict[str, Cached[Any]] = {}

    def __call__(self, route: str) -> Cached[Any]:
        if route not in self._cached:
            scheme = scheme_of(route)
            self._cached[route] = Cached(lambda: scheme.load(*self._source(route)), scheme.ttl)
        return self._cached[route]

    def set(self, route: str, value: Any, ttl: float | None = None) -> None:
        """Use ``value`` (fal: a list of raw ED25519 public keys; Replicate, WaveSpeed: the ``whsec_`` secret)."""
        self(route).set(value, ttl)


def scheme_of(route: str) -> Scheme:
    if route not in SCHEMES:
        raise WebhookRejected(f"route {route!r} takes no webhooks (routes with one: {', '.join(SCHEMES)})", route=route)
    return SCHEMES[route]


__all__ = ["SCHEMES", "Delivery", "Scheme", "SeenDeliveries", "WebhookKeys", "scheme_of"]
