"""The local route kit: LatentSync on this machine (route, fact sheet, prices); it has no fake."""

from __future__ import annotations

from ..kit import RouteKit

NAME = "local"
KIT = RouteKit(name=NAME, package=__name__, route="route:LocalRoute", kind="local")
