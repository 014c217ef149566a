"""Replicate helpers the route uses that are not one provider call: the transport, timestamps, output URLs,
predict time, and deleting a job's uploads through the files API.

Its own module so the Replicate route stays its single tries of each step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...deadlines import deadline_transport
from ...types import JobRecord

if TYPE_CHECKING:
    import httpx

#: Per-operation HTTP timeouts (a read or a write that stalls this long fails). Module constants for tests.
REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


def bounded_transport() -> httpx.BaseTransport:
    """A plain httpx transport (not the SDK's retrying one) whose every request has a timeout, cut to the
    job's deadline while a job runs (the SDK sends some requests with none)."""
    import httpx

    defaults = {
        "connect": CONNECT_TIMEOUT_S,
        "read": REQUEST_TIMEOUT_S,
        "write": REQUEST_TIMEOUT_S,
        "pool": REQUEST_TIMEOUT_S,
    }
    return deadline_transport(httpx.HTTPTransport(), defaults)


def parse_time(text: Any) -> datetime | None:
    """Replicate timestamps (``...T11:46:16.0649Z``, any fraction length) as aware datetimes."""
    if not isinstance(text, str):
        return None
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", text.strip())
    if found is None:
        return None
    zone = found.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    fraction = (found.group(2) or "0")[:6].ljust(6, "0")
    try:
        return datetime.fromisoformat(f"{found.group(1)}.{fraction}{zone}")
    except ValueError:
        return None


def output_url(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return next((item for item in output if isinstance(item, str)), None)
    if isinstance(output, dict):
        return next((item for item in output.values() if isinstance(item, str)), None)
    return None


def predict_time(prediction: Any) -> float | None:
    metrics = prediction.get("metrics") if isinstance(prediction, dict) else None
    value = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def delete_files(
    call: Callable[..., Any], client: Any, record: JobRecord, *, keep: bool
) -> tuple[list[str], list[str]] | None:
    """Try to delete every upload of ``record`` not yet deleted; ``None`` when there is none."""
    pending = [url for url in record.uploaded_uris if url not in record.deleted]
    if not pending:
        return None
    deleted = list(record.deleted)
    kept = [entry for entry in record.not_deleted if entry.split(" ", 1)[0] not in pending]
    for url in pending:
        if keep:
            kept.append(f"{url} (kept: the prediction may still be running; resume the job, or it expires)")
            continue
        try:
            call(client.files.delete, url.rstrip("/").rsplit("/", 1)[-1])
            deleted.append(url)
        except Exception as exc:  # noqa: BLE001 - a failed delete is recorded, never fatal
            if getattr(exc, "status", None) == 404:
                deleted.append(url)
            else:
                kept.append(
                    f"{url} (delete failed: {type(exc).__name__} {getattr(exc, 'status', '')}; it expires at Replicate)"
                )
    return deleted, kept
