"""Standard Webhooks signatures and the hub's public keys as a JWK Set.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``. ``v1a`` is Ed25519
with every hub key valid at the moment of sending: during a rotation's overlap a portal
gets both the old and the new key's signature and verifies with whichever its cached
JWKS holds. ``v1`` is HMAC-SHA256 with the portal's ``whsec_`` secret, when it has one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from payhub.settings import HubKey


def signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def signing_keys(hub_keys: Sequence[HubKey], moment: datetime) -> list[HubKey]:
    """The keys that sign (and are published) at ``moment``, current one first."""
    return [key for key in hub_keys if key.valid_at(moment)]


def webhook_signature(
    keys: Sequence[HubKey], whsec: str | None, webhook_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` header: space-separated ``v1a,…`` (and ``v1,…``)."""
    content = signed_content(webhook_id, timestamp, body)
    parts = ["v1a," + base64.b64encode(key.private_key.sign(content)).decode() for key in keys]
    if whsec is not None:
        secret = base64.b64decode(whsec.removeprefix("whsec_"))
        mac = hmac.new(secret, content, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(mac).decode())
    return " ".join(parts)


def jwk(key: HubKey) -> dict[str, Any]:
    """One public key as an RFC 7517 / RFC 8037 JWK."""
    raw = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": key.kid,
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "use": "sig",
        "alg": "EdDSA",
    }


def jwks(hub_keys: Sequence[HubKey], moment: datetime) -> dict[str, Any]:
    """The JWK Set a portal verifies ``v1a`` with: every key that signs at ``moment``."""
    return {"keys": [jwk(key) for key in signing_keys(hub_keys, moment)]}
