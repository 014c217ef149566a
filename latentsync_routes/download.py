"""Fetching a provider's output video to the user's destination, safely.

Why this is more than ``open(dest, "wb").write(get(url))``: provider outputs are short-lived (Replicate
deletes them after an hour) and already paid for, so a broken download must be retried *as a download*,
never by running the job again; a half-written file must never sit at the destination looking finished;
a wrong link must not fill the disk; and a provider-chosen file name must not choose where we write.

So the body is streamed to a temporary file beside the destination (same filesystem, so the final rename
is atomic), capped at ``settings.max_output_bytes``, checked against ``Content-Length``, probed with PyAV
before it is accepted, and only then moved into place, without replacing an existing file unless the
job allows it. Truncated or failed transfers go through the shared retry loop (step ``fetch``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import unquote, urlsplit

from .deadlines import deadline_transport
from .errors import DeadlineExceeded, DeadlinePassed, DownloadError, InputError, LatentSyncError
from .media import safe_name
from .outputs import publish_mode
from .retry import TRANSIENT_STATUSES, StepFailure, request_never_sent, retry_after_of, run_step

if TYPE_CHECKING:
    import httpx

    from .routes.base import JobContext

_CHUNK = 1024 * 1024
DOWNLOAD_TIMEOUT_S = 60.0


def destination_for(job: JobContext, file_name: str | None = None) -> Path:
    """Where the output goes: the job's output path, or a sanitised provider name inside it if a folder."""
    dest = Path(job.output_path)
    if dest.is_dir():
        return dest / safe_name(file_name or "", default=f"{job.job_id}.mp4")
    return dest


def ensure_writable(job: JobContext, route: str) -> None:
    """Refuse before anything is uploaded or paid for if the output would overwrite a file."""
    dest = Path(job.output_path)
    if dest.exists() and not dest.is_dir() and not job.overwrite:
        raise InputError(f"{dest} already exists; pass overwrite=True (CLI: --overwrite) to replace it", route=route)


def file_name_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def download_output(
    job: JobContext,
    url: str,
    *,
    route: str,
    request_id: str | None,
    file_name: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Path:
    """Download ``url`` to the job's destination; returns the final path. Raises :class:`DownloadError`."""
    dest = destination_for(job, file_name or file_name_from_url(url))
    if dest.exists() and not job.overwrite:
        raise DownloadError(
            f"{dest} already exists and overwrite is off; the output is still at {url}",
            route=route,
            request_id=request_id,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    cap = job.settings.max_output_bytes

    if url.startswith("data:"):
        return run_step(
            job,
            "fetch",
            lambda: _accept(_write_data_uri(url, dest, cap, route, request_id), dest, job, route, request_id, False),
            request_id=request_id,
        )

    client = _shared_client()

    def one_try() -> Path:
        tmp, length_known = _stream_to_temp(client, url, dest, cap, dict(headers or {}), route, request_id)
        return _accept(tmp, dest, job, route, request_id, not length_known)

    return _by_the_deadline(
        job,
        route,
        request_id,
        lambda on_deadline: run_step(job, "fetch", one_try, request_id=request_id, on_deadline=on_deadline),
    )


def _by_the_deadline(
    job: JobContext, route: str, request_id: str | None, fetch: Callable[[Callable[[], NoReturn]], Path]
) -> Path:
    """Run ``fetch`` (the download's retry loop) under the job's deadline, which bounds the whole download,
    a stalled body included (the shared client's transport cuts reads at the deadline: deadlines.py).

    At the deadline the download stops as :class:`DeadlineExceeded`; the temp file is gone and nothing is
    at the destination. The output is paid and still at the provider, so the job stays resumable."""

    def passed() -> NoReturn:
        raise DeadlineExceeded(
            f"the job deadline passed while downloading the output from {route}; the job is paid and its "
            f"output is kept by {route} for now: `latentsync-routes jobs resume {job.job_id}` downloads it",
            route=route,
            request_id=request_id,
        )

    try:
        return fetch(passed)
    except DeadlinePassed:
        passed()


_CLIENT: httpx.Client | None = None
_CLIENT_LOCK = threading.Lock()


def _shared_client() -> httpx.Client:
    """One pooled client for every download in the process.

    Building an httpx client loads the system CA bundle (tens of milliseconds); sharing one also reuses
    connections to the provider's CDN across jobs. httpx clients are safe to share between threads.
    """
    global _CLIENT
    import httpx

    with _CLIENT_LOCK:
        if _CLIENT is None:
            _CLIENT = httpx.Client(
                follow_redirects=True,
                timeout=httpx.Timeout(DOWNLOAD_TIMEOUT_S, connect=10.0),
                transport=deadline_transport(httpx.HTTPTransport()),  # a download ends at the job's deadline
            )
        return _CLIENT


try:  # POSIX advisory locks tell a live download's temp file from one a killed process left behind
    import fcntl
except ImportError:  # pragma: no cover - Windows: an open file cannot be deleted there anyway
    fcntl = None  # type: ignore[assignment]

#: Temp files held by downloads running in this process: path -> the open, locked descriptor.
_HELD: dict[str, int] = {}
_HELD_LOCK = threading.Lock()
#: Without POSIX locks, a temp file untouched this long is taken for a killed download's leftover.
STALE_PART_SECONDS = 6 * 3600.0
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


def _temp_prefix(dest: Path) -> str:
    """The fixed start of every temp name for ``dest``, so a later download of it can find stale ones.

    The digest keeps ``a.mp4``'s prefix from matching the temp files of ``a.mp4.x.mp4``.
    """
    digest = hashlib.sha256(dest.name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f".{dest.name[:64]}.{digest}."


def _remove_stale_parts(dest: Path) -> None:
    """Delete temp files that a killed earlier download of ``dest`` left beside it; never a live one.

    A running download holds an exclusive lock on its temp file until it is moved into place or
    removed, so a file whose lock can be taken belongs to nobody.
    """
    prefix = _temp_prefix(dest)
    try:
        candidates = [p for p in dest.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".part")]
    except OSError:
        return
    for path in candidates:
        if str(path) in _HELD:
            continue
        with contextlib.suppress(OSError):
            if fcntl is None:
                if os.stat(path).st_mtime < time.time() - STALE_PART_SECONDS:
                    path.unlink()
                continue
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises (an OSError) while a download holds it
                path.unlink()
            finally:
                os.close(fd)


def _temp_beside(dest: Path) -> Path:
    """A fresh, locked temp file beside ``dest`` (same filesystem: the final rename is atomic)."""
    _remove_stale_parts(dest)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".part", dir=dest.parent)
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with _HELD_LOCK:
        _HELD[name] = fd
    return Path(name)


def _discard(tmp: Path, *, unlink: bool = True) -> None:
    """Remove a temp file (unless it was moved into place) and drop its lock."""
    if unlink:
        tmp.unlink(missing_ok=True)
    with _HELD_LOCK:
        fd = _HELD.pop(str(tmp), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _whole_file_range(value: str | None) -> int | None:
    """The total size if a ``Content-Range`` covers the whole file (``bytes 0-(N-1)/N``), else ``None``."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    first, last, total = (int(group) for group in match.groups())
    return total if first == 0 and last == total - 1 else None


@dataclass(frozen=True)
class _Transfer:
    """One output being fetched, as every error about it names it.

    ``shown`` is the URL without its query string: a signed link's token must not reach a message or a record.
    """

    url: str
    route: str
    request_id: str | None

    @property
    def shown(self) -> str:
        return self.url.split("?", 1)[0]

    def failure(self, message: str, *, retryable: bool) -> StepFailure:
        return StepFailure(DownloadError(message, route=self.route, request_id=self.request_id), retryable=retryable)


def _stream_to_temp(
    client: httpx.Client,
    url: str,
    dest: Path,
    cap: int,
    headers: dict[str, str],
    route: str,
    request_id: str | None,
) -> tuple[Path, bool]:
    """One download try into a temp file; returns (temp path, whether Content-Length was checked)."""
    import httpx

    transfer = _Transfer(url, route, request_id)
    tmp = _temp_beside(dest)
    try:
        # identity: the cap then counts what crosses the wire, and a compressed bomb is not inflated here
        with client.stream("GET", url, headers={"Accept-Encoding": "identity", **headers}) as response:
            expected = _expected_size(response, transfer, cap)
            _write_capped(response, tmp, cap, transfer)
            got = response.num_bytes_downloaded
            if expected is not None and got != expected:
                raise transfer.failure(
                    f"output {transfer.shown} was truncated: {got} of {expected} bytes", retryable=True
                )
            return tmp, expected is not None
    except StepFailure:
        _discard(tmp)
        raise
    except httpx.HTTPError as exc:
        _discard(tmp)
        what = "could not connect" if request_never_sent(exc) else "broke off"
        raise transfer.failure(f"download of {transfer.shown} {what}: {type(exc).__name__}", retryable=True) from None
    except OSError as exc:
        _discard(tmp)
        raise transfer.failure(f"cannot write beside {dest}: {exc.strerror or exc}", retryable=False) from None
    except BaseException:
        _discard(tmp)
        raise


def _expected_size(response: httpx.Response, transfer: _Transfer, cap: int) -> int | None:
    """The body size the answer announces (None when it does not), once its status and size are acceptable.

    Checked before a byte is written: an error status, a partial range nobody asked for, or a declared size
    over the cap ends the try here.
    """
    status = response.status_code
    if status >= 400:
        error = DownloadError(
            f"output {transfer.shown} answered HTTP {status}",
            route=transfer.route,
            request_id=transfer.request_id,
            status_code=status,
        )
        raise StepFailure(
            error, retryable=status in TRANSIENT_STATUSES, http_status=status, retry_after=retry_after_of(response)
        )
    declared = response.headers.get("content-length")
    expected = int(declared) if declared and declared.isascii() and declared.isdigit() else None
    if status == 206:
        # Nobody asked for a range: only a 206 that covers the whole file is the whole file.
        content_range = response.headers.get("content-range")
        total = _whole_file_range(content_range)
        if total is None:
            raise transfer.failure(
                f"output {transfer.shown} answered 206 with Content-Range {(content_range or '')[:80]!r}, "
                "not the whole file",
                retryable=True,
            )
        expected = total if expected is None else expected
    if expected is not None and expected > cap:
        raise transfer.failure(
            f"output {transfer.shown} is {expected} bytes, over max_output_bytes={cap}", retryable=False
        )
    return expected


def _write_capped(response: httpx.Response, tmp: Path, cap: int, transfer: _Transfer) -> None:
    """Copy the body into ``tmp``, stopping as soon as it passes the cap (a wrong link must not fill the disk)."""
    received = 0
    with tmp.open("wb") as out:
        for chunk in response.iter_bytes(_CHUNK):
            received += len(chunk)
            if received > cap:
                raise transfer.failure(f"output {transfer.shown} exceeded max_output_bytes={cap}", retryable=False)
            out.write(chunk)


def _write_data_uri(url: str, dest: Path, cap: int, route: str, request_id: str | None) -> Path:
    import base64
    import binascii
    from urllib.parse import unquote_to_bytes

    meta, _, payload = url[5:].partition(",")
    is_base64 = meta.lower().endswith(";base64")
    if (len(payload) * 3 // 4 if is_base64 else len(payload) // 3) > cap:  # refuse before decoding it all
        raise StepFailure(
            DownloadError(f"output data: URI is over max_output_bytes={cap}", route=route, request_id=request_id),
            retryable=False,
        )
    try:
        data = base64.b64decode(payload) if is_base64 else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise StepFailure(
            DownloadError("output data: URI is not valid base64", route=route, request_id=request_id), retryable=False
        ) from None
    if len(data) > cap:
        raise StepFailure(
            DownloadError(
                f"output is {len(data)} bytes, over max_output_bytes={cap}", route=route, request_id=request_id
            ),
            retryable=False,
        )
    tmp = _temp_beside(dest)
    try:
        tmp.write_bytes(data)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _accept(tmp: Path, dest: Path, job: JobContext, route: str, request_id: str | None, retry_bad: bool) -> Path:
    """Probe the temp file and move it into place, holding its lock until it is in place or gone."""
    try:
        return _probe_and_move(tmp, dest, job, route, request_id, retry_bad)
    finally:
        _discard(tmp, unlink=False)


def _probe_and_move(
    tmp: Path, dest: Path, job: JobContext, route: str, request_id: str | None, retry_bad: bool
) -> Path:
    """Probe the temp file and move it into place; a file that will not open is never accepted.

    When the transfer had no ``Content-Length`` a truncation is only visible to the probe, so an unreadable
    file is then retried (download only); otherwise it is final.
    """
    from .media import probe
    from .types import MediaSource

    try:
        info = probe(MediaSource(kind="path", path=tmp), with_hash=False)
        if not info.has_video or info.duration <= 0:
            raise DownloadError(f"the output from {route} has no playable video", route=route, request_id=request_id)
    except LatentSyncError as exc:
        tmp.unlink(missing_ok=True)
        error = (
            exc
            if isinstance(exc, DownloadError)
            else DownloadError(
                f"the output from {route} is not a playable video: {exc.message}", route=route, request_id=request_id
            )
        )
        raise StepFailure(error, retryable=retry_bad) from None
    try:
        _move_into_place(tmp, dest, job.overwrite)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest} appeared while downloading and overwrite is off", route=route, request_id=request_id
        ) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}", route=route, request_id=request_id) from None
    return dest


def _move_into_place(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Atomic rename; without overwrite a hard link refuses an existing destination atomically."""
    publish_mode(tmp)  # the private temp file's 0600 must not become the output's mode
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError:  # filesystems without hard links: best effort check-then-rename
        if dest.exists():
            raise FileExistsError(str(dest)) from None
        os.replace(tmp, dest)
        return
    with contextlib.suppress(OSError):
        tmp.unlink()
