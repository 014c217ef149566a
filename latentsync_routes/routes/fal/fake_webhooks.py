"""FakeFal's webhooks (facts.py: webhook, webhook-signature): ED25519-signed deliveries and the JWKS."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from ...testing._webhooks import WebhookSending
from ...webhooks.signing import fal_message


class FalWebhooks(WebhookSending):
    #: the user id fal puts in X-Fal-Webhook-User-Id
    webhook_user_id = "fake-user"
    webhook_keys_need_auth = False

    def _webhook_signer(self) -> Any:
        if not hasattr(self, "_webhook_private_key"):
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            self._webhook_private_key = Ed25519PrivateKey.generate()
        return self._webhook_private_key

    def _webhook_key_document(self) -> tuple[str, Any]:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._webhook_signer().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return r"/\.well-known/jwks\.json", {
            "keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": x, "kid": "fake-fal-webhooks", "use": "sig"}]
        }

    def _sign_webhook(self, delivery_id: str, body: bytes) -> dict[str, str]:
        request_id = delivery_id.split(":", 1)[0]
        stamp = str(int(time.time()))
        signature = self._webhook_signer().sign(fal_message(request_id, self.webhook_user_id, stamp, body)).hex()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self.webhook_user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": signature,
        }

    def _job_ended(self, job: Any) -> None:
        """POST the ended request to its ``fal_webhook``: status OK with the result, or ERROR with the error."""
        failure = job.failure
        payload: dict[str, Any] = {"request_id": job.request_id, "gateway_request_id": job.request_id}
        if failure is None:
            payload.update(status="OK", payload=job.result)
        else:
            payload.update(status="ERROR", error=f"Invalid status code: {failure.status_code}", payload=failure.body)
        self._send_webhook(job.webhook_url, f"{job.request_id}:{uuid.uuid4().hex}", payload)
