"""Keep freed memory in the process on CPU runs, so big activations are not page-faulted in again.

Why: a UNet forward allocates and frees tens of GB of activations (a 16-frame chunk at 256 px makes
tensors of 80-340 MB). glibc's malloc serves every block over its mmap threshold (at most 32 MB) with a
fresh ``mmap`` and gives it back with ``munmap`` when freed, so each such tensor is page-faulted in, 4 KiB
at a time, on its first write. Measured on the development machine (2 vCPUs, a VM): about 7 million page
faults per UNet forward, 14-17 s of system time, and 15-20 % of the forward's CPU time
(docs/performance.md). Serving large blocks from the heap and not trimming it keeps those pages mapped
and reused, as jemalloc or tcmalloc would, without asking the user to preload either.

The price: the process keeps its peak heap after a job instead of returning it to the system. It is
process-wide, so it is done once, only for CPU runs, only on glibc, and never when the environment has
already chosen (``MALLOC_*_`` variables, ``GLIBC_TUNABLES`` malloc settings, a preloaded jemalloc or
tcmalloc). Turn it off with ``keep_freed_memory=False`` on the pipeline or the
``LATENTSYNC_ROUTES_LOCAL_KEEP_FREED_MEMORY=0`` setting of the local route.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading
from collections.abc import Mapping

__all__ = ["keep_freed_memory"]

log = logging.getLogger(__name__)

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Never trim the heap top below this (the largest value mallopt takes on every platform: INT_MAX).
_NO_TRIM = 2**31 - 1

_lock = threading.Lock()
_state: str | None = None


def _environment_chose(env: Mapping[str, str]) -> str | None:
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"):
        if name in env:
            return f"left as the environment set it ({name})"
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return "left as the environment set it (GLIBC_TUNABLES)"
    preload = env.get("LD_PRELOAD", "")
    for other in ("jemalloc", "tcmalloc", "mimalloc"):
        if other in preload:
            return f"left to the preloaded {other}"
    return None


def keep_freed_memory(env: Mapping[str, str] | None = None) -> str:
    """Tell glibc's malloc to serve large blocks from its heap and never trim it; once per process.

    Returns what was done, for logs and records: ``"kept"`` when set here (now or by an earlier call), or
    the reason it was left alone (not glibc, the environment chose, mallopt refused).
    """
    global _state
    with _lock:
        if _state is not None:
            return _state
        chosen = _environment_chose(os.environ if env is None else env)
        if chosen is not None:
            _state = chosen
        elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            _state = "left alone (not glibc)"
        else:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1
            _state = "kept" if ok else "left alone (mallopt refused)"
        log.debug("freed memory on CPU runs: %s", _state)
        return _state
