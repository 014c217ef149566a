"""Signed webhook deliveries from the fakes, as each provider's fact sheet describes them.

A fake whose job was submitted with a callback URL POSTs the job's end to it once the job ends, signed as its
provider signs (:mod:`latentsync_routes.webhooks.signing`), and serves the keys or secret to check it with.
A delivery that is not answered 2xx is tried again after each of ``webhook_retry_delays`` (fal documents 10
retries over 2 hours; Replicate and WaveSpeed say a delivery may be resent, so the fakes resend the same way,
the cautious reading for a receiver). Every try is recorded in ``webhook_attempts``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._wire import Response, Route, route


@dataclass
class DeliveryAttempt:
    """One try of one delivery: where, what the receiver answered (``None``: no answer) and when."""

    url: str
    delivery_id: str
    status: int | None
    at: float
    body: bytes


class WebhookSending:
    """Mixed into a fake: delivery threads, retries, and the record of every try."""

    #: seconds before each retry of a delivery not answered 2xx (loopback-fast stand-ins for the provider's)
    webhook_retry_delays: Sequence[float] = (0.05,) * 10
    #: whether the keys or secret endpoint needs the account's credential (fal's JWKS is public)
    webhook_keys_need_auth = True

    @property
    def webhook_attempts(self) -> list[DeliveryAttempt]:
        if not hasattr(self, "_webhook_attempts"):
            self._webhook_attempts: list[DeliveryAttempt] = []
            self._webhook_threads: list[threading.Thread] = []
        return self._webhook_attempts

    def _webhook_routes(self) -> list[Route]:
        path, payload = self._webhook_key_document()
        return [
            route(
                "GET",
                path,
                "webhook_keys",
                lambda request, match: Response.json(200, payload),
                auth=self.webhook_keys_need_auth,
            )
        ]

    def _webhook_key_document(self) -> tuple[str, Any]:
        raise NotImplementedError

    def _sign_webhook(self, delivery_id: str, body: bytes) -> dict[str, str]:
        """The signature headers of one try (a new timestamp each try, the same id)."""
        raise NotImplementedError

    def _send_webhook(self, url: str | None, delivery_id: str, payload: dict[str, Any]) -> None:
        """Deliver ``payload`` to ``url`` from a thread, retrying as the provider does."""
        if not url:
            return
        attempts = self.webhook_attempts
        body = json.dumps(payload).encode()
        thread = threading.Thread(
            target=self._deliver,
            args=(url, delivery_id, body, attempts),
            daemon=True,
            name=f"fake-webhook-{delivery_id[:8]}",
        )
        self._webhook_threads.append(thread)
        thread.start()

    def _deliver(self, url: str, delivery_id: str, body: bytes, attempts: list[DeliveryAttempt]) -> None:
        import httpx

        for delay in (0.0, *self.webhook_retry_delays):
            time.sleep(delay)
            headers = {"Content-Type": "application/json", **self._sign_webhook(delivery_id, body)}
            try:
                status: int | None = httpx.post(url, content=body, headers=headers, timeout=30.0).status_code
            except httpx.HTTPError:
                status = None
            attempts.append(DeliveryAttempt(url, delivery_id, status, time.time(), body))
            if status is not None and 200 <= status < 300:
                return

    def wait_for_webhooks(self, timeout: float = 30.0) -> None:
        """Block until every delivery started so far was answered 2xx or ran out of retries."""
        self.webhook_attempts  # noqa: B018 - makes the thread list
        give_up = time.monotonic() + timeout
        for thread in list(self._webhook_threads):
            thread.join(max(0.0, give_up - time.monotonic()))
