"""The two signing schemes the providers use, both ways: verify (the package) and sign (the fakes).

``webhook-*`` headers (Replicate, WaveSpeed: the Standard Webhooks layout, ``{id}.{timestamp}.{body}`` under
HMAC-SHA256), and fal's ED25519 over ``request id, user id, timestamp, sha256(body)`` joined by newlines. Each
route's fact sheet cites its provider's page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from ..errors import WebhookSignatureInvalid


def hmac_content(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{delivery_id}.{timestamp}.".encode() + body


def replicate_key(secret: str) -> bytes:
    """Replicate's secret is ``whsec_`` and base64: the HMAC key is the decoded part."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise WebhookSignatureInvalid(
            "the Replicate signing secret is not whsec_ and base64", route="replicate"
        ) from None


def wavespeed_key(secret: str) -> bytes:
    """WaveSpeed's secret is ``whsec_`` and a string used as is (its page: "do not base64 decode it")."""
    return secret.removeprefix("whsec_").encode()


def sign_replicate(key: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, hmac_content(delivery_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_wavespeed(key: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    return "v3," + hmac.new(key, hmac_content(delivery_id, timestamp, body), hashlib.sha256).hexdigest()


def matches_any(expected: str, given: str) -> bool:
    """Whether one of the space-separated signatures given equals the expected one (compared in constant time)."""
    return any(hmac.compare_digest(expected.encode(), part.encode()) for part in given.split())


def fal_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def fal_verifies(public_keys: Iterable[bytes], message: bytes, signature_hex: str) -> bool:
    """Whether one of fal's published ED25519 keys (raw 32 bytes each) signed ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return False
    for raw in public_keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def jwks_keys(document: object) -> list[bytes]:
    """The ED25519 public keys of a JWKS document (``keys[].x``, base64url without padding)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    found = []
    for entry in keys if isinstance(keys, list) else []:
        if isinstance(entry, dict) and entry.get("crv", "Ed25519") == "Ed25519" and isinstance(entry.get("x"), str):
            raw = entry["x"]
            found.append(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    return found
