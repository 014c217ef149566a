"""Routes: one folder per way of running LatentSync, and the registry of their kits.

Each line of :data:`REGISTRY` adds a route: its folder (``routes/<name>/``) holds the route, its fact
sheet, its fake and its prices, and names them in its ``KIT`` (:class:`~.kit.RouteKit`). Everything that
lists routes reads this table.
"""

from __future__ import annotations

from .kit import RouteKit, kit_of

REGISTRY: dict[str, RouteKit] = {
    "local": kit_of("latentsync_routes.routes.local"),
    "fal": kit_of("latentsync_routes.routes.fal"),
    "replicate": kit_of("latentsync_routes.routes.replicate"),
    "wavespeed": kit_of("latentsync_routes.routes.wavespeed"),
}

__all__ = ["REGISTRY", "RouteKit"]
