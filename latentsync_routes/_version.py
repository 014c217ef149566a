"""The package's version, in a module of its own.

Modules that stamp it (job records, ``doctor``, ``--version``) read it here rather than from the package
``__init__``, which re-exports the whole public API: importing the version from there would make every
such module depend on the facade and everything above it.
"""

from __future__ import annotations

__version__ = "0.1.0"
