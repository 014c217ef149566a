"""FakeWaveSpeed's webhooks (facts.py: webhook, webhook-signature): v3 HMAC-signed deliveries and the secret."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ...testing._webhooks import WebhookSending
from ...webhooks.signing import sign_wavespeed, wavespeed_key

#: the account's signing secret this fake serves (GET /api/v3/webhook/secret)
SECRET = "whsec_fake-wavespeed-webhook-secret"  # noqa: S105 - the fake's own, public by design


class WaveSpeedWebhooks(WebhookSending):
    webhook_secret = SECRET

    def _webhook_key_document(self) -> tuple[str, Any]:
        return r"/api/v3/webhook/secret", {"code": 200, "message": "success", "data": {"secret": self.webhook_secret}}

    def _sign_webhook(self, delivery_id: str, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        return {
            "webhook-id": delivery_id,
            "webhook-timestamp": stamp,
            "webhook-signature": sign_wavespeed(wavespeed_key(self.webhook_secret), delivery_id, stamp, body),
        }

    def _job_ended(self, prediction: Any, payload: dict[str, Any]) -> None:
        self._send_webhook(prediction.webhook, uuid.uuid4().hex, payload)
