"""Unknown ``LATENTSYNC_ROUTES_*`` variables: a typo in a setting's name must not pass in silence.

pydantic-settings ignores environment variables that name no field, so ``LATENTSYNC_ROUTES_ROUT=fal``
would leave the default route in place without a word. :func:`warn_unknown` logs one warning per unknown
name and process, naming the closest known variable.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import Iterable, Mapping

log = logging.getLogger("latentsync_routes")

PREFIX = "LATENTSYNC_ROUTES_"
#: Variables read outside :class:`~latentsync_routes.config.Settings`: the config file's path, and the
#: switch of the opt-in tests against the real fal service (tests/, benchmarks/).
OTHER_NAMES = ("LATENTSYNC_ROUTES_CONFIG", "LATENTSYNC_ROUTES_USE_REAL_FAL")

_warned: set[str] = set()
_lock = threading.Lock()


def unknown(environ: Mapping[str, str], known: Iterable[str]) -> list[tuple[str, str | None]]:
    """Each unknown ``LATENTSYNC_ROUTES_*`` name in ``environ`` with the closest known name (or ``None``)."""
    known = sorted(known)
    found = []
    for name in sorted(environ):
        if name.upper().startswith(PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
            found.append((name, close[0] if close else None))
    return found


def warn_unknown(known: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Log a warning (once per name and process) for each variable not in ``known``; returns the new warnings.

    ``known`` comes from :func:`latentsync_routes.config.known_names` (the settings and every route kit's
    variables), so this module imports nothing of the package."""
    environ = os.environ if environ is None else environ
    if not any(name.upper().startswith(PREFIX) for name in environ):
        return []
    messages = []
    for name, close in unknown(environ, known):
        with _lock:
            if name in _warned:
                continue
            _warned.add(name)
        hint = f"; did you mean {close}?" if close else "; see docs/index.md, Configuration"
        messages.append(f"warning: {name} is not a latentsync-routes setting and is ignored{hint}")
    for message in messages:
        log.warning(message)
    return messages
