"""On-disk file store shared by the fakes (uploads in, generated outputs out).

Bodies are streamed straight to the fake's temporary directory, never held in
memory, so tests can push realistically large media through the upload paths.
The store also resolves URLs back to bytes, which lets a fake "model" read the
inputs a client uploaded, exactly as the hosted model would fetch them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._media import decode_data_uri

if TYPE_CHECKING:
    from ._wire import Request


@dataclass(eq=False)
class StoredFile:
    """A file held by a fake: an upload a client made, or an output the fake produced.

    ``origin`` says which route stored it: ``"cdn_v3"``, ``"multipart"``,
    ``"storage"`` (fal's legacy signed-URL upload), ``"files_api"`` (Replicate
    ``/v1/files``) or ``"output"``. ``lifecycle`` / ``lifecycle_preference`` hold the
    parsed ``X-Fal-Object-Lifecycle*`` headers, when the client sent them.
    """

    id: str
    name: str
    content_type: str
    size: int
    sha256: str
    md5: str
    path: Path
    url: str
    origin: str
    created_at: float = field(default_factory=time.time)
    lifecycle: Any = None
    lifecycle_preference: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    @property
    def etag(self) -> str:
        return f'"{self.md5}"'


def safe_name(name: str | None, default: str = "upload.bin") -> str:
    """A file name safe for disk paths and URLs (provider CDNs also normalise names)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", (name or "").strip().rsplit("/", 1)[-1])
    return cleaned.strip(".") or default


def new_id(length: int = 21) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class FileStore:
    """Thread-safe registry of :class:`StoredFile` keyed by id and by URL."""

    def __init__(self, root: Path, lock: threading.RLock) -> None:
        self.root = root
        self._lock = lock
        self._by_id: dict[str, StoredFile] = {}

    def save_request(
        self, request: Request, *, file_id: str, name: str, content_type: str, url: str, origin: str, **extra: Any
    ) -> StoredFile:
        """Stream the request body to disk; registered only once the whole body arrived."""
        path = self.root / f"{file_id}_{name}"
        partial = path.with_name(path.name + ".part")
        size, sha, md5 = request.save_body(partial)
        partial.replace(path)
        return self.add(StoredFile(file_id, name, content_type, size, sha, md5, path, url, origin, **extra))

    def save_bytes(
        self, data: bytes, *, file_id: str, name: str, content_type: str, url: str, origin: str, **extra: Any
    ) -> StoredFile:
        path = self.root / f"{file_id}_{name}"
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self.add(StoredFile(file_id, name, content_type, len(data), sha, md5, path, url, origin, **extra))

    def register_path(
        self, path: Path, *, file_id: str, name: str, content_type: str, url: str, origin: str, **extra: Any
    ) -> StoredFile:
        """Register a file already written to ``path`` (e.g. assembled multipart parts)."""
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        with path.open("rb") as src:
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        return self.add(
            StoredFile(file_id, name, content_type, size, sha.hexdigest(), md5.hexdigest(), path, url, origin, **extra)
        )

    def add(self, stored: StoredFile) -> StoredFile:
        with self._lock:
            self._by_id[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._by_id.get(file_id)

    def remove(self, file_id: str) -> StoredFile | None:
        with self._lock:
            stored = self._by_id.pop(file_id, None)
        if stored is not None:
            stored.path.unlink(missing_ok=True)
        return stored

    def by_url(self, url: str) -> StoredFile | None:
        bare = url.split("?", 1)[0]
        with self._lock:
            for stored in self._by_id.values():
                if stored.url == bare:
                    return stored
        return None

    def all(self) -> list[StoredFile]:
        with self._lock:
            return list(self._by_id.values())

    def resolve(self, value: Any) -> bytes | None:
        """Bytes behind a ``data:`` URI or a URL this fake serves; None for anything else."""
        if not isinstance(value, str):
            return None
        data = decode_data_uri(value)
        if data is not None:
            return data
        stored = self.by_url(value)
        return stored.read_bytes() if stored is not None else None
