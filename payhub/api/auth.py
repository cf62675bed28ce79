"""Who is calling: RFC 9421 HTTP Message Signatures on portal and finance requests.

CONTRACT §1 fixes the rules; this module enforces them in one order, so a given bad
request always gets the same problem code::

    headers missing         -> signature_missing
    structured fields parse -> signature_invalid
    keyid known             -> signature_invalid
    alg matches the key     -> signature_invalid
    created within ±300 s   -> signature_expired
    body has Content-Digest -> digest_mismatch
    required coverage       -> signature_invalid
    Content-Digest matches  -> digest_mismatch
    signature verifies      -> signature_invalid
    nonce unused            -> signature_replayed

The signature base is the ``http-message-signatures`` library's (or, for the common
shape, built directly and checked equal to it); Ed25519 signatures are verified by
libsodium through PyNaCl, which does it in half OpenSSL's time (``payhub bench``). The
policy around them (clock, coverage, digest, replay) is the hub's, checked against the
hub's own ``now`` so that tests and the simulated demo day are deterministic.
Every failure, including any exception a client-crafted header provokes inside the
library, leaves as a :class:`~payhub.errors.ProblemError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    VerificationKey,
    algorithms,
)
from http_sf.compat import Dictionary, InnerList, Item
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from payhub.errors import ConfigError, ProblemError

__all__ = [
    "CREATED_TOLERANCE",
    "NONCE_LIFETIME",
    "Credential",
    "MemoryNonceStore",
    "NonceStore",
    "PrincipalKind",
    "SignedRequest",
    "authenticate",
    "required_components",
]

CREATED_TOLERANCE = timedelta(seconds=300)
"""How far ``created`` may be from the hub's clock, either way (CONTRACT §1)."""

NONCE_LIFETIME = timedelta(seconds=600)
"""How long a claimed nonce stays unusable; longer than any ``created`` we accept."""

MIN_HMAC_SECRET_BYTES = 32

_ALGORITHMS: dict[str, type[algorithms.HTTPSignatureAlgorithm]] = {
    "ed25519": algorithms.ED25519,
    "hmac-sha256": algorithms.HMAC_SHA256,
}


class PrincipalKind(StrEnum):
    """Whom a key belongs to; decides which routes the request may use."""

    PORTAL = "portal"
    FINANCE = "finance"


@dataclass(frozen=True)
class Credential:
    """A registered request-signing key and the one principal it speaks for.

    The key is kept out of ``repr`` so that logging a credential never leaks an HMAC
    secret, and out of the hash because Ed25519 public key objects are unhashable.
    """

    keyid: str
    kind: PrincipalKind
    principal: str
    algorithm: str
    key: Ed25519PublicKey | bytes = field(repr=False, hash=False)
    _sodium_key: VerifyKey | None = field(
        init=False, default=None, repr=False, hash=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.algorithm == "ed25519":
            if not isinstance(self.key, Ed25519PublicKey):
                raise ConfigError(f"key {self.keyid!r}: ed25519 needs an Ed25519 public key")
            raw = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            object.__setattr__(self, "_sodium_key", VerifyKey(raw))
        elif self.algorithm == "hmac-sha256":
            if not isinstance(self.key, bytes) or len(self.key) < MIN_HMAC_SECRET_BYTES:
                raise ConfigError(
                    f"key {self.keyid!r}: hmac-sha256 needs a secret of at least "
                    f"{MIN_HMAC_SECRET_BYTES} bytes"
                )
        else:
            raise ConfigError(f"key {self.keyid!r}: unsupported algorithm {self.algorithm!r}")


class NonceStore(Protocol):
    """Remembers which nonces each key has used, so a captured request cannot be replayed."""

    async def claim(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        """Reserve ``nonce`` for ``keyid`` until ``expires_at``; True only the first time."""
        ...


class MemoryNonceStore:
    """An in-process nonce store: for tests, one-process setups and as a front cache.

    It needs no clock of its own: every claim is made with ``expires_at = now +
    lifetime``, so the claim's own time is ``expires_at - lifetime``. That keeps replay
    decisions on the hub's clock (fake or real) and lets expired entries be pruned as a
    side effect of claiming, oldest first.
    """

    def __init__(self, *, lifetime: timedelta = NONCE_LIFETIME) -> None:
        self._lifetime = lifetime
        self._expiry: dict[tuple[str, str], datetime] = {}
        self._queue: list[tuple[datetime, str, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    async def claim(self, keyid: str, nonce: str, expires_at: datetime) -> bool:
        now = expires_at - self._lifetime
        self._forget_until(now)
        slot = (keyid, nonce)
        previous = self._expiry.get(slot)
        if previous is not None and previous > now:
            return False
        self._expiry[slot] = expires_at
        heapq.heappush(self._queue, (expires_at, keyid, nonce))
        return True

    async def prune(self, now: datetime) -> int:
        """Forget nonces that expired by ``now``; returns how many."""
        return self._forget_until(now)

    def _forget_until(self, now: datetime) -> int:
        forgotten = 0
        queue = self._queue
        while queue and queue[0][0] <= now:
            expires_at, keyid, nonce = heapq.heappop(queue)
            slot = (keyid, nonce)
            # A slot re-claimed after expiry has a newer entry further back in the queue.
            if self._expiry.get(slot) == expires_at:
                del self._expiry[slot]
                forgotten += 1
        return forgotten


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request a signature covers, independent of aiohttp.

    ``url`` is absolute and encoded exactly as the request target arrived; ``headers``
    may be a multidict (every field line is seen) or any mapping.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    @classmethod
    def from_aiohttp(cls, request: web.BaseRequest, body: bytes) -> SignedRequest:
        """Build from an aiohttp request and its already-read raw body.

        ``raw_path`` is used instead of ``request.url`` because yarl re-normalises
        paths and percent-escapes, and the client signed what it sent.
        """
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        return cls(method=request.method, url=url, headers=request.headers, body=body)


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


async def authenticate(
    request: SignedRequest,
    credentials: Mapping[str, Credential],
    nonces: NonceStore,
    now: datetime,
    *,
    body_streamed: bool = False,
) -> Credential:
    """Return the credential that signed ``request``, or raise ``ProblemError``.

    The nonce is claimed last, only for a verified signature, so that nobody can use
    up another key's nonces with forged requests. With ``body_streamed`` the body has not
    been read yet (a statement upload): the signature is checked over the headers, which
    must include a covered ``Content-Digest``, and the handler checks that digest against
    the body as it streams it.
    """
    fields = _relevant_fields(request.headers)
    signature_input = fields.get("signature-input")
    signature = fields.get("signature")
    if not signature_input or not signature:
        raise ProblemError(
            "signature_missing", "The request needs Signature-Input and Signature headers."
        )
    parsed = _parse_signature(signature_input, signature)

    credential = credentials.get(parsed.keyid)
    if credential is None or credential.keyid != parsed.keyid:
        raise ProblemError("signature_invalid", "The keyid is not registered.")
    if parsed.alg is not None and parsed.alg != credential.algorithm:
        raise ProblemError("signature_invalid", "alg does not match the key's algorithm.")

    moment = now.timestamp()
    tolerance = CREATED_TOLERANCE.total_seconds()
    if abs(parsed.created - moment) > tolerance:
        raise ProblemError("signature_expired", "created is more than 300 s from the hub's clock.")
    if parsed.expires is not None and parsed.expires < moment:
        raise ProblemError("signature_expired", "The signature's expires time has passed.")

    if request.body and "content-digest" not in fields:
        # Checked before coverage: a client that sends no digest cannot cover one, and
        # CONTRACT §2 names the missing digest, not the coverage it implies.
        raise ProblemError("digest_mismatch", "A request with a body needs Content-Digest.")
    required = required_components(
        request.url,
        has_body=bool(request.body) or body_streamed,
        has_idempotency_key="idempotency-key" in fields,
    )
    missing = [name for name in required if name not in parsed.covered]
    if missing:
        raise ProblemError(
            "signature_invalid", "The signature must also cover " + ", ".join(missing) + "."
        )

    if body_streamed:
        if not fields.get("content-digest"):
            raise ProblemError("digest_mismatch", "A request with a body needs Content-Digest.")
    else:
        _check_digest(fields.get("content-digest"), request.body)
    _verify(request, credential, parsed)

    if not await nonces.claim(credential.keyid, parsed.nonce, now + NONCE_LIFETIME):
        raise ProblemError("signature_replayed", "This nonce was already used with this key.")
    return credential


_RELEVANT = frozenset(
    {"signature", "signature-input", "content-digest", "idempotency-key", "content-type"}
)


def _relevant_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Combine repeated field lines (RFC 9110 §5.3) of the headers this module reads."""
    lines: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _RELEVANT:
            lines.setdefault(lowered, []).append(value.strip(" \t"))
    return {name: ", ".join(values) for name, values in lines.items()}


class _HubVerifier(HTTPMessageVerifier):
    """The library's verifier, fed the signature authenticate() has already parsed.

    ``verify()`` would parse Signature-Input and Signature a second time (a sixth of
    the cost of a request), so this goes one level down to the library's own parser
    and per-signature check. Both are private: the library is pinned to 3.0.0 and an
    upgrade that changes them fails ``tests/unit/test_pinned_internals.py`` by name, never
    open (any exception there is ``signature_invalid``). Its time checks are switched off:
    the library compares ``created``/``expires`` with the real clock, the hub has
    already compared them with its own (possibly fake) one, and two clocks must never
    disagree about one request.
    """

    def validate_created_and_expires(self, sig_input: object, max_age: object = None) -> None:
        return None

    @classmethod
    def parse_dictionary(cls, value: str) -> Dictionary:
        return cls._parse_signature_dictionary(value)

    def verify_parsed(self, request: SignedRequest, parsed: _SignatureInput) -> None:
        """Build the signature base from ``request`` and check the signature bytes."""
        self._verify_one(  # type: ignore[no-untyped-call]
            label=parsed.label,
            sig_input=parsed.members,
            signature=parsed.signature_item,
            message=request,
            max_age=None,
        )


@dataclass(frozen=True, slots=True)
class _SignatureInput:
    """The one signature, parsed once, with its metadata type-checked.

    ``components`` lists the covered component names in order, each with whether it
    carries parameters; ``covered`` holds those covered without parameters (the contract's
    required components must be covered in that plain form). ``signature_params`` is the
    inner list serialized as RFC 8941 does, the ``@signature-params`` line of the base.
    The library's objects (``members``, ``signature_item``) are built only when the
    library itself has to verify.
    """

    label: str
    components: tuple[tuple[str, bool], ...]
    param_names: frozenset[str]
    signature: bytes
    signature_params: str
    covered: frozenset[str]
    keyid: str
    created: int
    nonce: str
    alg: str | None
    expires: int | None
    tag_is_text: bool
    signature_input_field: str
    signature_field: str

    @property
    def members(self) -> InnerList:
        members = _HubVerifier.parse_dictionary(self.signature_input_field)[self.label]
        assert isinstance(members, InnerList)
        return members

    @property
    def signature_item(self) -> Item:
        item = _HubVerifier.parse_dictionary(self.signature_field)[self.label]
        assert isinstance(item, Item)
        return item


# The shape every portal SDK sends, in RFC 8941's own serialization: one label, an inner
# list of plain quoted component names separated by one space, parameters that are strings
# without escapes or integers without leading zeros, a byte sequence in base64.
# For it the header text already is the serialization, and one regular expression replaces
# the structured-field parser and serializer (a sixth of the cost of a request).
_SF_KEY = r"[a-z*][a-z0-9_\-.*]*"
_COMMON_INPUT = re.compile(
    rf'(?P<label>{_SF_KEY})=(?P<list>\((?P<items>"[a-z0-9@._\-]+"(?: "[a-z0-9@._\-]+")*)?\)'
    rf'(?P<params>(?:;{_SF_KEY}=(?:"[ !#-\[\]-~]*"|0|-?[1-9][0-9]{{0,14}}))*))'
)
_COMMON_PARAM = re.compile(rf';({_SF_KEY})=(?:"([ !#-\[\]-~]*)"|(-?[0-9]+))')
_COMMON_SIGNATURE = re.compile(rf"(?P<label>{_SF_KEY})=:(?P<b64>[A-Za-z0-9+/]*={{0,2}}):")


def _parse_signature(signature_input: str, signature: str) -> _SignatureInput:
    common = _parse_common(signature_input, signature)
    if common is not None:
        return common
    return _parse_with_library(signature_input, signature)


def _parse_common(signature_input: str, signature: str) -> _SignatureInput | None:
    """The common shape without the library, or ``None`` to let the library decide."""
    given = _COMMON_INPUT.fullmatch(signature_input)
    signed = _COMMON_SIGNATURE.fullmatch(signature)
    if given is None or signed is None or given["label"] != signed["label"]:
        return None
    try:
        signature_bytes = base64.b64decode(signed["b64"], validate=True)
    except binascii.Error:
        return None
    params: dict[str, str | int] = {}
    for name, text, number in _COMMON_PARAM.findall(given["params"]):
        if name in params:
            return None  # a repeated parameter: the serialization differs from the text
        params[name] = int(number) if number else text
    items = given["items"]
    names = tuple(item[1:-1] for item in items.split(" ")) if items else ()
    return _checked(
        label=given["label"],
        components=tuple((name, False) for name in names),
        params=params,
        signature=signature_bytes,
        signature_params=given["list"],
        fields=(signature_input, signature),
    )


def _parse_with_library(signature_input: str, signature: str) -> _SignatureInput:
    def invalid(detail: str) -> ProblemError:
        return ProblemError("signature_invalid", detail)

    try:
        inputs = _HubVerifier.parse_dictionary(signature_input)
        signatures = _HubVerifier.parse_dictionary(signature)
    except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
        raise invalid("Signature-Input or Signature is not a valid structured field.") from exc
    if len(inputs) != 1 or inputs.keys() != signatures.keys():
        raise invalid("Send exactly one signature, under the same label in both headers.")
    ((label, members),) = inputs.items()
    signature_item = signatures[label]
    if not isinstance(members, InnerList):
        raise invalid("Signature-Input must be an inner list of components.")
    if not isinstance(signature_item, Item) or not isinstance(signature_item.value, bytes):
        raise invalid("Signature must be a byte sequence.")
    components = []
    for member in members:
        if type(member.value) is not str:
            raise invalid("Covered components must be strings.")
        components.append((member.value, bool(member.params)))
    return _checked(
        label=label,
        components=tuple(components),
        params=dict(members.params),
        signature=signature_item.value,
        signature_params=str(members),
        fields=(signature_input, signature),
    )


def _checked(
    *,
    label: str,
    components: tuple[tuple[str, bool], ...],
    params: Mapping[str, object],
    signature: bytes,
    signature_params: str,
    fields: tuple[str, str],
) -> _SignatureInput:
    def invalid(detail: str) -> ProblemError:
        return ProblemError("signature_invalid", detail)

    keyid = params.get("keyid")
    created = params.get("created")
    nonce = params.get("nonce")
    alg = params.get("alg")
    expires = params.get("expires")
    if type(keyid) is not str or not keyid:
        raise invalid("The keyid parameter is required.")
    if type(created) is not int:
        raise invalid("The created parameter is required (an integer).")
    if type(nonce) is not str or not nonce:
        raise invalid("The nonce parameter is required.")
    if alg is not None and type(alg) is not str:
        raise invalid("The alg parameter must be a string.")
    if expires is not None and type(expires) is not int:
        raise invalid("The expires parameter must be an integer.")
    return _SignatureInput(
        label=label,
        components=components,
        param_names=frozenset(params),
        signature=signature,
        signature_params=signature_params,
        covered=frozenset(name for name, has_params in components if not has_params),
        keyid=keyid,
        created=created,
        nonce=nonce,
        alg=alg,
        expires=expires,
        tag_is_text=type(params.get("tag", "")) is str,
        signature_input_field=fields[0],
        signature_field=fields[1],
    )


def _check_digest(content_digest: str | None, body: bytes) -> None:
    """Compare ``Content-Digest`` with the raw body; required whenever there is a body."""
    if content_digest is None:
        if body:
            raise ProblemError("digest_mismatch", "A request with a body needs Content-Digest.")
        return
    plain = plain_digest_matches(content_digest, body)
    if plain is True:
        return
    try:
        if plain is False:
            raise ValueError("the digest differs")
        ContentDigest.verify(content_digest, body)
    except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
        raise ProblemError(
            "digest_mismatch", "Content-Digest (sha-256 or sha-512) does not match the body."
        ) from exc


_PLAIN_DIGEST = re.compile(r"(sha-256|sha-512)=:([A-Za-z0-9+/]*={0,2}):")
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def plain_digest_matches(content_digest: str, body: bytes) -> bool | None:
    """Whether a one-member ``Content-Digest`` matches ``body``; ``None``: not that shape.

    Every portal sends ``sha-256=:<base64>:``. The library reads it as a Structured Field
    dictionary one character at a time (~30 µs, a twentieth of a create); this reads
    exactly that shape with one regular expression and leaves anything else (other
    members, parameters, spaces, lenient base64, wrong lengths) to the library, which
    also decides every refusal of those. A property test checks both agree.
    """
    found = _PLAIN_DIGEST.fullmatch(content_digest)
    if found is None:
        return None
    algorithm, encoded = found.groups()
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return None
    hasher = _DIGESTS[algorithm]
    if len(digest) != hasher().digest_size:
        return None
    return hmac.compare_digest(digest, hasher(body).digest())


class _OneKey(HTTPSignatureKeyResolver):
    """Resolves only the credential authenticate() already looked up."""

    def __init__(self, credential: Credential) -> None:
        self._keyid = credential.keyid
        self._key = credential.key

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        return self._key if key_id == self._keyid else None


@lru_cache(maxsize=4096)
def _verifier_for(credential: Credential) -> _HubVerifier:
    """One verifier per registered key, reused across requests."""
    return _HubVerifier(
        signature_algorithm=_ALGORITHMS[credential.algorithm], key_resolver=_OneKey(credential)
    )


_PLAIN_DERIVED = frozenset({"@method", "@path", "@query", "@scheme"})
_PLAIN_PARAMS = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})
_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def plain_signature_base(request: SignedRequest, parsed: _SignatureInput) -> bytes | None:
    """The RFC 9421 signature base of the common case, built directly, or ``None``.

    Portals cover ``@method``, ``@path``, ``@query`` and a few plain header fields. For
    exactly that case the base is a few joined lines, and building it here instead of
    through the library's general component resolver saves about 150 µs a request,
    nearly half the cost of authentication (``payhub bench``). Anything else (component
    parameters, ``@authority``, ``@target-uri``, repeated components, non-ASCII or control
    characters, absent fields) returns ``None`` and goes to the library, which also
    decides every refusal. ``tests/unit/test_request_auth.py`` checks this base equals
    the library's for generated requests.
    """
    if not parsed.param_names <= _PLAIN_PARAMS or not parsed.tag_is_text:
        return None
    url = urlsplit(request.url)
    lines = []
    seen: set[str] = set()
    for name, has_params in parsed.components:
        if has_params or name in seen:
            return None
        seen.add(name)
        if name in _PLAIN_DERIVED:
            if name == "@method":
                value = request.method
            elif name == "@path":
                value = url.path or "/"
            elif name == "@query":
                value = "?" + url.query
            else:
                value = url.scheme.lower()
        elif _FIELD_NAME.fullmatch(name):
            values = _field_lines(request.headers, name)
            if not values:
                return None
            value = ", ".join(v.strip(" \t") for v in values)
        else:
            return None
        if not _PRINTABLE.fullmatch(value) or (name[0] == "@" and value != value.strip(" ")):
            return None
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {parsed.signature_params}')
    return "\n".join(lines).encode("ascii")


def _field_lines(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    return [value for key, value in headers.items() if key.lower() == name]


def _signature_matches(credential: Credential, signature: bytes, base: bytes) -> bool:
    if isinstance(credential.key, bytes):
        expected = hmac.new(credential.key, base, hashlib.sha256).digest()
        return hmac.compare_digest(expected, signature)
    return ed25519_verifies(credential, signature, base)


def ed25519_verifies(credential: Credential, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the credential's Ed25519 signature of ``message``.

    libsodium's verification, about 55 µs against OpenSSL's 105 µs on the bench machine:
    on an Ed25519 portal's create it is the largest single cost after aiohttp's own.
    It refuses everything OpenSSL refuses (``tests/unit/test_request_auth.py`` compares
    the two on generated keys, messages and tampered signatures).
    """
    verify_key = credential._sodium_key
    if verify_key is None or len(signature) != 64:
        return False
    try:
        verify_key.verify(message, signature)
    except BadSignatureError:
        return False
    return True


def _verify(request: SignedRequest, credential: Credential, parsed: _SignatureInput) -> None:
    base = plain_signature_base(request, parsed)
    if base is not None:
        if not _signature_matches(credential, parsed.signature, base):
            raise ProblemError("signature_invalid", "The signature does not verify.")
        return
    try:
        _verifier_for(credential).verify_parsed(request, parsed)
    except Exception as exc:
        # Everything in here is the library reading client-controlled input: whatever
        # goes wrong (bad bytes, unknown components, odd URLs) means "not verified".
        raise ProblemError("signature_invalid", "The signature does not verify.") from exc
