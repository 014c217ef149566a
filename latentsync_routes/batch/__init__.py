"""Many jobs at once: a manifest, checked and priced whole before anything runs, then run by an executor."""

from __future__ import annotations
