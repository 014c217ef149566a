"""Where a job's output goes, decided and checked before anything is uploaded or paid for.

An output that cannot be written must be found out while the job still costs nothing: a parent that is a
file, a folder without write permission, a format this package does not write, or a file already there.
When the output is a folder, the file name comes from the job's idempotency key, not from the provider,
so two jobs into one folder never collide and a re-run of one job finds its own file again.

A finished output gets the mode any new file of the user's gets (``0666`` less the umask), whichever
route wrote it: a download lands in a private temporary file first (``0600``), which must not leak
into the result.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .types import JobRecord

#: Containers the routes write (every route returns MP4).
OUTPUT_SUFFIXES = (".mp4",)


def resolve_output(output: str | os.PathLike[str], *, route: str) -> Path:
    """The absolute output path, with its folder checked; a folder stays a folder (see :func:`file_in`)."""
    text = os.fspath(output)
    if not text or any(ord(c) < 32 for c in text):
        raise InputError(f"the output path {text!r} is empty or holds control characters", route=route)
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        _check_folder(path, route)
        return path
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(
            f"{path.name}: the output is written as MP4; give a path ending in .mp4 (or a folder)", route=route
        )
    parent = path.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {path}: {existing} is a file, not a folder", route=route)
    _check_folder(existing, route)
    return path


def file_in(folder: Path, video_name: str, key: str) -> Path:
    """The output file for a job whose output is a folder: the video's stem and the job's key."""
    stem = Path(video_name).stem or "output"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "output"
    return folder / f"{safe}.synced-{key[:10]}.mp4"


def check_free(path: Path, *, overwrite: bool, route: str) -> None:
    """Refuse an existing output unless overwriting is allowed."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it", route=route)
    if path.is_dir():
        raise InputError(f"{path} is a folder", route=route)


def _check_folder(folder: Path, route: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {folder}: permission denied", route=route)


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status);
    elsewhere set-and-restore under a lock, for the instant that takes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def publish_mode(path: Path) -> None:
    """Give a finished output file the mode a new file of the user's would have: ``0666 & ~umask``."""
    os.chmod(path, 0o666 & ~current_umask())


#: where the package stages copies of inputs it was handed (the web page's uploads), under its home folder
STAGED_INPUTS = ("ui", "uploads")


def remove_staged_inputs(record: JobRecord, home: Path) -> list[str]:
    """Delete the job's inputs that are the package's own staged copies (never a file the user pointed at).

    Only files inside ``<home>/ui/uploads/`` are touched; their folder goes too once it is empty.
    """
    root = home.joinpath(*STAGED_INPUTS).resolve()
    removed: list[str] = []
    for item in record.inputs:
        if item.kind != "path":
            continue
        path = Path(item.source).resolve()
        if root in path.parents and path.is_file():
            path.unlink()
            removed.append(f"staged {item.role} {path}")
            with contextlib.suppress(OSError):
                path.parent.rmdir()
    return removed


def delete_job_files(
    record: JobRecord, home: Path, remote: Callable[[JobRecord], tuple[list[str], list[str]]], *, delete_output: bool
) -> JobRecord:
    """``delete_job``: the job's local output and staged inputs removed, then what ``remote`` (its route's
    ``delete_remote``) can remove at the provider. The record is kept (it is the audit trail): the copy
    returned says what was deleted and what could not be, for the caller to save."""
    deleted: list[str] = []
    if delete_output and record.output_path:
        path = Path(record.output_path)
        if path.is_file():
            path.unlink()
            deleted.append(f"local output {path}")
    if delete_output:
        deleted += remove_staged_inputs(record, home)
    remote_deleted, kept = remote(record)
    return record.model_copy(update={"deleted": [*record.deleted, *deleted, *remote_deleted], "not_deleted": kept})
