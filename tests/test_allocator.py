"""CPU runs keep freed memory: after the tuning, a large block freed and allocated again is not
page-faulted in a second time; the environment's own choice is left alone. Each case runs in a fresh
interpreter, because the tuning is process-wide."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from latentsync_routes.local.allocator import _environment_chose

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the tuning is for glibc's malloc"
)

# Allocate, touch and free a 256 MiB block twice; report the minor page faults of the second round.
CHILD = r"""
import ctypes, json, resource, sys
state = None
if sys.argv[1] == "keep":
    from latentsync_routes.local.allocator import keep_freed_memory
    state = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 256 << 20
def cycle():
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
cycle()
print(json.dumps({"state": state, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def child(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                          env={**clean, **env}, timeout=120)  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_freed_block_is_reused_without_faulting_its_pages_in_again() -> None:
    plain, kept = child("plain"), child("keep")
    pages = (256 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert kept["state"] == "kept"
    assert int(str(plain["faults"])) > pages // 2  # glibc mmaps it afresh: every page faults again
    assert int(str(kept["faults"])) < pages // 20  # kept in the heap: the pages are still there


def test_the_environments_own_choice_is_left_alone() -> None:
    result = child("keep", MALLOC_MMAP_MAX_="65536")
    assert result["state"] == "left as the environment set it (MALLOC_MMAP_MAX_)"
    assert int(str(result["faults"])) > (256 << 20) // os.sysconf("SC_PAGE_SIZE") // 2  # nothing changed


@pytest.mark.parametrize(
    ("env", "reason"),
    [({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, "GLIBC_TUNABLES"),
     ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "jemalloc"), ({"MALLOC_TRIM_THRESHOLD_": "1"}, "MALLOC_TRIM"),
     ({"GLIBC_TUNABLES": "glibc.rtld.nns=2"}, None), ({}, None)],
)  # fmt: skip
def test_which_settings_count_as_the_environment_choosing(env: dict[str, str], reason: str | None) -> None:
    chose = _environment_chose(env)
    assert (chose is None) if reason is None else (chose is not None and reason in chose)
