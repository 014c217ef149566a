"""Callback URLs fit to print: a webhook URL may carry a token in its query, so its query never reaches a
log line, a repr or an error. The journal keeps the URL itself (``jobs.webhook_url``, outside the record).

The one place the package itself would print it is httpx's request log (``HTTP Request: POST <url>``, at
INFO), since fal and WaveSpeed take the callback as a query parameter of the submit; a filter on the
``httpx`` logger rewrites such URLs before any handler sees them.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: query parameters that carry a callback URL in a provider request (fal ``fal_webhook``, WaveSpeed ``webhook``)
WEBHOOK_PARAMETERS = frozenset({"fal_webhook", "webhook", "webhook_url"})
_INSTALLED = threading.Event()
_LOCK = threading.Lock()


def redacted_url(url: str) -> str:
    """``url`` without its query and user info (``?<redacted>`` says there was a query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "<redacted>" if parts.query else "", ""))


def _carries_webhook(text: str) -> bool:
    try:
        return any(name in WEBHOOK_PARAMETERS for name, _ in parse_qsl(urlsplit(text).query))
    except ValueError:
        return False


class _WebhookRedaction(logging.Filter):
    """Rewrites a logged URL whose query carries a callback URL to :func:`redacted_url` of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redacted_url(str(arg)) if "://" in str(arg) and _carries_webhook(str(arg)) else arg
                for arg in record.args
            )
        return True


def hide_webhook_urls_in_logs() -> None:
    """Install the filter on the ``httpx`` logger, once per process."""
    if _INSTALLED.is_set():
        return
    with _LOCK:
        if not _INSTALLED.is_set():
            logging.getLogger("httpx").addFilter(_WebhookRedaction())
            _INSTALLED.set()
