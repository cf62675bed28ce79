"""Verifying PayHub's webhooks on the portal side (CONTRACT §4, Standard Webhooks).

Needs only the standard library and ``cryptography``. A webhook is accepted when

- its ``webhook-timestamp`` is within ``tolerance`` seconds of the portal's clock (a
  captured request cannot be replayed later), and
- one of its ``v1a`` signatures verifies with a key of the hub's JWKS (when keys are
  given), and its ``v1`` signature verifies with the portal's ``whsec_`` secret (when a
  secret is given). During a hub key rotation two ``v1a`` signatures come: either
  key verifies.

A hub delivers at least once: the same event may arrive again with the same
``webhook-id``. ``SeenWebhooks`` remembers the ids already handled so that a portal acts
on each event once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DEFAULT_TOLERANCE = 300
"""Seconds a webhook's timestamp may differ from the portal's clock (Standard Webhooks)."""
SEEN_FOR = 4 * 86400
"""How long a webhook-id is remembered: longer than the hub's whole retry schedule."""


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh PayHub webhook; the reason is safe to log."""


@dataclass(frozen=True)
class Webhook:
    """A verified webhook: its id (the event id), timestamp, type and data."""

    id: str
    timestamp: int
    type: str
    data: Any
    body: bytes


def keys_from_jwks(document: Mapping[str, Any]) -> list[Ed25519PublicKey]:
    """The Ed25519 public keys of an RFC 7517 JWK Set (``kty OKP``, ``crv Ed25519``)."""
    found = []
    for jwk in document.get("keys", []):
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP":
            continue
        if jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
            continue
        x = jwk["x"]
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            found.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return found


class WebhookVerifier:
    """Checks signatures and freshness; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        public_keys: Sequence[Ed25519PublicKey] = (),
        whsec: str | None = None,
        tolerance: int = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not public_keys and whsec is None:
            raise ValueError("give the hub's public keys (its JWKS), a whsec_ secret, or both")
        self.public_keys = list(public_keys)
        self._secret = base64.b64decode(whsec.removeprefix("whsec_")) if whsec is not None else None
        self.tolerance = tolerance
        self.clock = clock

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any], **options: Any) -> WebhookVerifier:
        return cls(public_keys=keys_from_jwks(document), **options)

    def verify(self, headers: Mapping[str, str], body: bytes) -> Webhook:
        """The verified webhook, or ``WebhookVerificationError`` saying why not."""
        webhook_id = _header(headers, "webhook-id")
        timestamp_text = _header(headers, "webhook-timestamp")
        signature = _header(headers, "webhook-signature")
        try:
            timestamp = int(timestamp_text)
        except ValueError:
            raise WebhookVerificationError("webhook-timestamp is not an integer") from None
        if abs(self.clock() - timestamp) > self.tolerance:
            raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
        content = f"{webhook_id}.{timestamp}.".encode() + body
        versions: dict[str, list[bytes]] = {}
        for part in signature.split():
            version, _, value = part.partition(",")
            try:
                versions.setdefault(version, []).append(base64.b64decode(value, validate=True))
            except (ValueError, binascii.Error):
                continue
        if self.public_keys and not any(
            _ed25519_ok(key, sig, content)
            for key in self.public_keys
            for sig in versions.get("v1a", [])
        ):
            raise WebhookVerificationError("no v1a signature verifies with the hub's keys")
        if self._secret is not None:
            expected = hmac.new(self._secret, content, hashlib.sha256).digest()
            if not any(hmac.compare_digest(expected, sig) for sig in versions.get("v1", [])):
                raise WebhookVerificationError("the v1 signature does not match the whsec")
        try:
            document = json.loads(body)
            return Webhook(webhook_id, timestamp, document["type"], document["data"], body)
        except (ValueError, KeyError, TypeError):
            raise WebhookVerificationError("the body is not a PayHub event") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookVerificationError(f"missing {name} header")
    return value


def _ed25519_ok(key: Ed25519PublicKey, signature: bytes, content: bytes) -> bool:
    try:
        key.verify(signature, content)
    except InvalidSignature:
        return False
    return True


class SeenWebhooks:
    """The webhook-ids already handled, remembered for ``SEEN_FOR`` seconds, in memory.

    A portal running several processes, or wanting dedup across restarts, gives the
    receiver its own store with the same two methods (e.g. a table keyed by the id).
    """

    def __init__(self, *, keep: float = SEEN_FOR, clock: Callable[[], float] = time.time) -> None:
        self.keep = keep
        self.clock = clock
        self._ids: OrderedDict[str, float] = OrderedDict()

    def seen(self, webhook_id: str) -> bool:
        self._forget_old()
        return webhook_id in self._ids

    def remember(self, webhook_id: str) -> None:
        self._ids[webhook_id] = self.clock()
        self._ids.move_to_end(webhook_id)

    def _forget_old(self) -> None:
        limit = self.clock() - self.keep
        while self._ids:
            oldest, at = next(iter(self._ids.items()))
            if at >= limit:
                break
            del self._ids[oldest]
