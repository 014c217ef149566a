"""Each provider's webhook, as its documentation describes it (sources and dates in the route's facts.py).

* fal: ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` and ``-Signature`` (hex ED25519 over the
  first three and the body's sha256, joined by newlines), keys from fal's JWKS (cached at most 24 h, as its
  page says), timestamp within 300 s. Body: ``request_id``, ``status`` ``OK``/``ERROR``, ``payload``.
* Replicate: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (``v1,<base64>`` entries, space
  separated), HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the account's secret
  (``GET /v1/webhooks/default/secret``). Body: the prediction (``id``, ``status``).
* WaveSpeed: the same headers, ``v3,<hex>``, the secret (``GET /api/v3/webhook/secret``) used as a string
  without its ``whsec_`` prefix, 300 s. Body: ``id``, ``status`` ``completed``/``failed``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import WebhookSignatureInvalid
from .base import Cached, Delivery, check_timestamp, header
from .signing import (
    fal_message,
    fal_verifies,
    hmac_content,
    jwks_keys,
    matches_any,
    replicate_key,
    sign_replicate,
    sign_wavespeed,
    wavespeed_key,
)

#: fal's published webhook keys (its webhooks page)
FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
REPLICATE_API = "https://api.replicate.com"
WAVESPEED_API = "https://api.wavespeed.ai"
TOLERANCE_S = 300.0

_FAL_STATES = {"OK": "succeeded", "ERROR": "failed"}
_REPLICATE_STATES = {"succeeded": "succeeded", "failed": "failed", "canceled": "cancelled", "aborted": "failed"}
_WAVESPEED_STATES = {"completed": "succeeded", "failed": "failed"}


def _json(body: bytes, route: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookSignatureInvalid(f"{route} webhook body is not JSON", route=route) from None
    if not isinstance(data, dict):
        raise WebhookSignatureInvalid(f"{route} webhook body is not a JSON object", route=route)
    return data


def verify_fal(headers: Mapping[str, str], body: bytes, keys: Cached[list[bytes]], now: float) -> Delivery:
    request_id = header(headers, "X-Fal-Webhook-Request-Id", "fal")
    user_id = header(headers, "X-Fal-Webhook-User-Id", "fal")
    timestamp = header(headers, "X-Fal-Webhook-Timestamp", "fal")
    signature = header(headers, "X-Fal-Webhook-Signature", "fal")
    check_timestamp(timestamp, now=now, tolerance=TOLERANCE_S, route="fal")
    message = fal_message(request_id, user_id, timestamp, body)
    if not fal_verifies(keys.get(), message, signature) and not fal_verifies(
        keys.get(refresh=True), message, signature
    ):
        raise WebhookSignatureInvalid("fal webhook signature matches none of fal's published keys", route="fal")
    data = _json(body, "fal")
    if data.get("request_id") not in (None, request_id):
        raise WebhookSignatureInvalid("fal webhook body names another request than its signed header", route="fal")
    state = _FAL_STATES.get(str(data.get("status")), "running")
    return Delivery("fal", signature.lower(), request_id, state, data)


def _verify_hmac(
    route: str, headers: Mapping[str, str], body: bytes, key: bytes, sign: Callable[[bytes, str, str, bytes], str]
) -> tuple[str, dict[str, Any]]:
    delivery_id = header(headers, "webhook-id", route)
    timestamp = header(headers, "webhook-timestamp", route)
    given = header(headers, "webhook-signature", route)
    if not matches_any(sign(key, delivery_id, timestamp, body), given):
        raise WebhookSignatureInvalid(f"{route} webhook signature does not match the signing secret", route=route)
    return delivery_id, _json(body, route)


def verify_replicate(headers: Mapping[str, str], body: bytes, secret: Cached[str], now: float) -> Delivery:
    check_timestamp(
        header(headers, "webhook-timestamp", "replicate"), now=now, tolerance=TOLERANCE_S, route="replicate"
    )
    delivery_id, data = _verify_hmac("replicate", headers, body, replicate_key(secret.get()), sign_replicate)
    state = _REPLICATE_STATES.get(str(data.get("status")), "running")
    return Delivery("replicate", delivery_id, str(data.get("id") or ""), state, data)


def verify_wavespeed(headers: Mapping[str, str], body: bytes, secret: Cached[str], now: float) -> Delivery:
    check_timestamp(
        header(headers, "webhook-timestamp", "wavespeed"), now=now, tolerance=TOLERANCE_S, route="wavespeed"
    )
    delivery_id, data = _verify_hmac("wavespeed", headers, body, wavespeed_key(secret.get()), sign_wavespeed)
    nested = data.get("data")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else data
    state = _WAVESPEED_STATES.get(str(inner.get("status")), "running")
    return Delivery("wavespeed", delivery_id, str(inner.get("id") or ""), state, data)


@dataclass(frozen=True)
class Scheme:
    """One provider's webhook: how a delivery is verified and where its keys or secret come from."""

    verify: Callable[[Mapping[str, str], bytes, Any, float], Delivery]
    #: (base URL override or None, credential or None) -> the keys or secret
    load: Callable[[str | None, str | None], Any]
    #: how long the fetched keys or secret are kept
    ttl: float
    #: the provider's submit field for the callback URL (for the docs and the error messages)
    field: str


def _get_json(url: str, token: str | None, route: str) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=30.0)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise WebhookSignatureInvalid(
            f"could not fetch the {route} webhook keys ({type(exc).__name__}); the "
            "delivery is refused until they can be checked",
            route=route,
        ) from None


def _load_fal(base: str | None, _token: str | None) -> list[bytes]:
    url = f"{base.rstrip('/')}/.well-known/jwks.json" if base else FAL_JWKS_URL
    return jwks_keys(_get_json(url, None, "fal"))


def _load_replicate(base: str | None, token: str | None) -> str:
    data = _get_json(f"{(base or REPLICATE_API).rstrip('/')}/v1/webhooks/default/secret", token, "replicate")
    return str(data.get("key") or "") if isinstance(data, dict) else ""


def _load_wavespeed(base: str | None, token: str | None) -> str:
    data = _get_json(f"{(base or WAVESPEED_API).rstrip('/')}/api/v3/webhook/secret", token, "wavespeed")
    inner = data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), dict) else data
    return str(inner.get("secret") or "") if isinstance(inner, dict) else ""


SCHEMES: dict[str, Scheme] = {
    "fal": Scheme(verify_fal, _load_fal, 24 * 3600.0, "webhook_url (query fal_webhook)"),
    "replicate": Scheme(verify_replicate, _load_replicate, 3600.0, "webhook, webhook_events_filter"),
    "wavespeed": Scheme(verify_wavespeed, _load_wavespeed, 3600.0, "webhook (query parameter)"),
}

__all__ = ["SCHEMES", "Scheme", "hmac_content", "verify_fal", "verify_replicate", "verify_wavespeed"]
