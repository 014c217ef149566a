"""Run LatentSync lip-sync locally, on fal or on Replicate through one client."""

from __future__ import annotations

__version__ = "0.1.0"
