"""The portal SDK: PayHub requests signed exactly as CONTRACT §1 asks.

A body is serialised once, digested, signed and sent as the same bytes, so what the hub
verifies is what the portal meant. Finance users sign the same way and use the same
class. The signing is ``payhub.portal.rfc9421``: the SDK needs only aiohttp and
cryptography.
"""

from __future__ import annotations

import json as jsonlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDictProxy
from yarl import URL

from payhub.portal.rfc9421 import content_digest, sign_request

__all__ = ["PortalClient", "PortalResponse", "encode_json", "required_components", "sign_headers"]

SIGNATURE_LABEL = "sig1"
JSON = "application/json"
_MIN_HMAC_SECRET_BYTES = 32


@dataclass(frozen=True)
class PortalResponse:
    """What the hub answered, fully read, so callers need no ``async with``."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def system_clock() -> datetime:
    return datetime.now(UTC)


def required_components(url: str, *, has_body: bool, has_idempotency_key: bool) -> list[str]:
    """The components CONTRACT §1 requires a signature to cover for such a request."""
    components = ["@method", "@path"]
    if "?" in url.partition("#")[0]:
        components.append("@query")
    if has_body:
        components += ["content-digest", "content-type"]
    if has_idempotency_key:
        components.append("idempotency-key")
    return components


def encode_json(value: object) -> bytes:
    """The one serialisation of a JSON body: compact UTF-8, Vietnamese text unescaped."""
    return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _check_key(key: Ed25519PrivateKey | bytes) -> None:
    if isinstance(key, Ed25519PrivateKey):
        return
    if isinstance(key, bytes) and len(key) >= _MIN_HMAC_SECRET_BYTES:
        return
    raise ValueError(
        f"key must be an Ed25519 private key or an HMAC secret of at least "
        f"{_MIN_HMAC_SECRET_BYTES} bytes"
    )


def sign_headers(
    method: str,
    url: str,
    *,
    keyid: str,
    key: Ed25519PrivateKey | bytes,
    created: datetime,
    body: bytes = b"",
    content_type: str | None = None,
    idempotency_key: str | None = None,
    nonce: str | None = None,
    headers: Mapping[str, str] | None = None,
    covered_components: Sequence[str] | None = None,
    digest_algorithm: str = "sha-256",
    include_alg: bool = True,
) -> dict[str, str]:
    """Return the headers that sign this request: the given ones plus the signature's.

    ``url`` is the encoded absolute URL the request will be sent to. The defaults give
    exactly what the contract requires; ``covered_components``, ``nonce`` and
    ``digest_algorithm`` exist so tests can build requests the hub must refuse.
    """
    _check_key(key)
    signed = dict(headers or {})
    if body:
        signed["Content-Digest"] = content_digest(body, digest_algorithm)
    if content_type is not None:
        signed["Content-Type"] = content_type
    if idempotency_key is not None:
        signed["Idempotency-Key"] = idempotency_key
    if covered_components is None:
        covered_components = required_components(
            url, has_body=bool(body), has_idempotency_key=idempotency_key is not None
        )
    signed.update(
        sign_request(
            method.upper(),
            url,
            signed,
            covered=list(covered_components),
            keyid=keyid,
            key=key,
            created=created,
            nonce=secrets.token_urlsafe(18) if nonce is None else nonce,
            label=SIGNATURE_LABEL,
            include_alg=include_alg,
        )
    )
    return signed


class PortalClient:
    """A portal's (or finance user's) signed connection to PayHub.

    The session belongs to the caller, who closes it; the client only borrows it.
    Non-2xx answers are returned, not raised: a problem document is an expected answer.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        keyid: str,
        key: Ed25519PrivateKey | bytes,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._keyid = keyid
        self._key = key
        self._clock = clock
        _check_key(key)

    @property
    def keyid(self) -> str:
        return self._keyid

    def url(self, path: str, params: Mapping[str, str | int] | None = None) -> str:
        """The encoded absolute URL for ``path`` (and query ``params``) on this hub."""
        url = URL(self._base_url + path)
        if params:
            url = url.update_query({name: str(value) for name, value in params.items()})
        return str(url)

    def sign_headers(
        self,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        idempotency_key: str | None = None,
        nonce: str | None = None,
        created: datetime | None = None,
        covered_components: Sequence[str] | None = None,
    ) -> dict[str, str]:
        """Signed headers for a request with this client's key (see :func:`sign_headers`)."""
        return sign_headers(
            method,
            url,
            keyid=self._keyid,
            key=self._key,
            created=self._clock() if created is None else created,
            body=body,
            content_type=content_type,
            idempotency_key=idempotency_key,
            nonce=nonce,
            covered_components=covered_components,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> PortalResponse:
        """Send one signed request; ``json`` or raw ``data`` (with ``content_type``)."""
        if json is not None and data is not None:
            raise ValueError("pass either json or data, not both")
        body = data or b""
        if json is not None:
            body = encode_json(json)
            content_type = content_type or JSON
        if body and content_type is None:
            raise ValueError("a body needs a content_type")
        url = self.url(path, params)
        headers = self.sign_headers(
            method,
            url,
            body=body,
            content_type=content_type if body else None,
            idempotency_key=idempotency_key,
        )
        async with self._session.request(
            method.upper(),
            URL(url, encoded=True),
            data=body or None,
            headers=headers,
            # Without a body there is no content type to claim (aiohttp would invent one).
            skip_auto_headers=() if body else ("Content-Type",),
        ) as response:
            return PortalResponse(response.status, response.headers, await response.read())

    async def create_payment(self, body: Mapping[str, Any], idempotency_key: str) -> PortalResponse:
        return await self.request(
            "POST", "/v1/payments", json=body, idempotency_key=idempotency_key
        )

    async def get_payment(self, payment_id: str) -> PortalResponse:
        return await self.request("GET", f"/v1/payments/{_segment(payment_id)}")

    async def list_payments(self, dossier: str) -> PortalResponse:
        return await self.request("GET", "/v1/payments", params={"dossier": dossier})

    async def cancel_payment(self, payment_id: str) -> PortalResponse:
        return await self.request("POST", f"/v1/payments/{_segment(payment_id)}/cancel")

    async def create_refund(
        self, payment_id: str, body: Mapping[str, Any], idempotency_key: str
    ) -> PortalResponse:
        return await self.request(
            "POST",
            f"/v1/payments/{_segment(payment_id)}/refunds",
            json=body,
            idempotency_key=idempotency_key,
        )

    async def get_dossier(self, code: str) -> PortalResponse:
        return await self.request("GET", f"/v1/dossiers/{_segment(code)}")

    async def list_events(
        self, after: str | None = None, limit: int | None = None
    ) -> PortalResponse:
        params: dict[str, str | int] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        return await self.request("GET", "/v1/events", params=params)


def _segment(value: str) -> str:
    """One path segment, escaped so an id can never add segments or a query."""
    return quote(value, safe="")
