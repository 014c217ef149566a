"""FakeReplicate's webhooks (facts.py: webhook, webhook-signature): HMAC-signed deliveries and the secret."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from ...testing._webhooks import WebhookSending
from ...webhooks.signing import replicate_key, sign_replicate

#: the account's signing secret this fake serves (GET /v1/webhooks/default/secret)
SECRET = "whsec_" + base64.b64encode(b"fake-replicate-webhook-secret-01").decode()


class ReplicateWebhooks(WebhookSending):
    webhook_secret = SECRET

    def _webhook_key_document(self) -> tuple[str, Any]:
        return r"/v1/webhooks/default/secret", {"key": self.webhook_secret}

    def _sign_webhook(self, delivery_id: str, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        return {
            "webhook-id": delivery_id,
            "webhook-timestamp": stamp,
            "webhook-signature": sign_replicate(replicate_key(self.webhook_secret), delivery_id, stamp, body),
        }

    def _job_ended(self, prediction: Any, payload: dict[str, Any]) -> None:
        """POST the ended prediction to its ``webhook`` (the filter asks for ``completed`` only)."""
        self._send_webhook(prediction.webhook, f"msg_{uuid.uuid4().hex[:24]}", payload)
