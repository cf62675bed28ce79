"""Request signatures (CONTRACT §1): every refusal has its code, for both algorithms.

Requests are signed with the portal SDK (the ``http-message-signatures`` signer) and, to
show the hub speaks RFC 9421 rather than one library's dialect, with a signature base
built by hand from RFC 9421 §2.5.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

import payhub.portal
from payhub.api.auth import (
    Credential,
    MemoryNonceStore,
    PrincipalKind,
    SignedRequest,
    authenticate,
)
from payhub.errors import ConfigError, ProblemError
from payhub.portal import PortalClient, encode_json, sign_headers

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
BASE = "https://hub.example"
CREATE_URL = f"{BASE}/v1/payments"
LIST_URL = f"{BASE}/v1/payments?dossier=H29.17-261127-0001"
BODY = encode_json({"amount": 2550000, "payer": {"name": "Nguyễn Văn An"}})
JSON = "application/json"

ALGORITHMS = ["ed25519", "hmac-sha256"]

T = TypeVar("T")


@dataclass(frozen=True)
class Portal:
    keyid: str
    signing_key: Ed25519PrivateKey | bytes
    credential: Credential


def make_portal(keyid: str, algorithm: str) -> Portal:
    if algorithm == "ed25519":
        private = Ed25519PrivateKey.generate()
        return Portal(
            keyid,
            private,
            Credential(keyid, PrincipalKind.PORTAL, keyid, "ed25519", private.public_key()),
        )
    secret = hashlib.sha256(keyid.encode()).digest()
    return Portal(keyid, secret, Credential(keyid, PrincipalKind.PORTAL, keyid, algorithm, secret))


@pytest.fixture(name="algorithm", params=ALGORITHMS)
def _algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="alice")
def _alice(algorithm: str) -> Portal:
    return make_portal("alice", algorithm)


@pytest.fixture(name="bob")
def _bob(algorithm: str) -> Portal:
    return make_portal("bob", algorithm)


@pytest.fixture(name="credentials")
def _credentials(alice: Portal, bob: Portal) -> dict[str, Credential]:
    return {alice.keyid: alice.credential, bob.keyid: bob.credential}


@pytest.fixture(name="nonces")
def _nonces() -> MemoryNonceStore:
    return MemoryNonceStore()


def signed(
    portal: Portal,
    *,
    method: str = "POST",
    url: str = CREATE_URL,
    body: bytes = BODY,
    idempotency_key: str | None = "idem-1",
    created: datetime = NOW,
    keyid: str | None = None,
    **options: Any,
) -> SignedRequest:
    headers = sign_headers(
        method,
        url,
        keyid=keyid or portal.keyid,
        key=portal.signing_key,
        created=created,
        body=body,
        content_type=JSON if body else None,
        idempotency_key=idempotency_key,
        **options,
    )
    return SignedRequest(method, url, headers, body)


def with_headers(request: SignedRequest, **changes: str | None) -> SignedRequest:
    """Replace (or, with None, drop) headers; keyword names use _ for -."""
    headers = dict(request.headers)
    for name, value in changes.items():
        header = name.replace("_", "-")
        headers = {k: v for k, v in headers.items() if k.lower() != header.lower()}
        if value is not None:
            headers[header] = value
    return replace(request, headers=headers)


async def refused(
    request: SignedRequest,
    credentials: Mapping[str, Credential],
    nonces: MemoryNonceStore,
    now: datetime = NOW,
) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        await authenticate(request, credentials, nonces, now)
    return caught.value


# --- accepted ---------------------------------------------------------------------------


async def test_valid_create_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    credential = await authenticate(signed(alice), credentials, nonces, NOW)
    assert credential is alice.credential
    assert credential.principal == "alice"


async def test_valid_get_with_query_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, method="GET", url=LIST_URL, body=b"", idempotency_key=None)
    assert "@query" in request.headers["Signature-Input"]
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


async def test_post_without_body_needs_no_digest(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, url=f"{BASE}/v1/payments/pay_1/cancel", body=b"", idempotency_key=None)
    assert "Content-Digest" not in request.headers
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


async def test_alg_may_be_omitted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, include_alg=False)
    assert "alg=" not in request.headers["Signature-Input"]
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


async def test_sha512_digest_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, digest_algorithm="sha-512")
    assert request.headers["Content-Digest"].startswith("sha-512=:")
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


async def test_header_names_are_case_insensitive_and_multidicts_work(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice)
    lowered = {name.lower(): value for name, value in request.headers.items()}
    assert await authenticate(replace(request, headers=lowered), credentials, nonces, NOW)
    again = signed(alice)
    multi = CIMultiDictProxy(CIMultiDict(again.headers))
    assert await authenticate(replace(again, headers=multi), credentials, nonces, NOW)


@pytest.mark.parametrize("skew", [-300, -299, 299, 300])
async def test_created_within_300_seconds_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore, skew: int
) -> None:
    request = signed(alice, created=NOW + timedelta(seconds=skew))
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


# --- signature_missing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "drop",
    [("Signature",), ("Signature-Input",), ("Signature", "Signature-Input")],
)
async def test_missing_signature_headers(
    alice: Portal,
    credentials: dict[str, Credential],
    nonces: MemoryNonceStore,
    drop: tuple[str, ...],
) -> None:
    request = with_headers(signed(alice), **{name.replace("-", "_"): None for name in drop})
    assert (await refused(request, credentials, nonces)).code == "signature_missing"


async def test_empty_signature_header_counts_as_missing(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = with_headers(signed(alice), Signature="  ")
    assert (await refused(request, credentials, nonces)).code == "signature_missing"


# --- signature_invalid --------------------------------------------------------------------


async def test_tampered_signature_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice)
    label, _, value = request.headers["Signature"].partition("=")
    raw = bytearray(base64.b64decode(value.strip(":")))
    raw[0] ^= 1
    tampered = f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"
    problem = await refused(with_headers(request, Signature=tampered), credentials, nonces)
    assert problem.code == "signature_invalid"
    assert problem.status == 401


async def test_tampered_path_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, method="GET", url=f"{BASE}/v1/payments/pay_1", body=b"")
    moved = replace(request, url=f"{BASE}/v1/payments/pay_2")
    assert (await refused(moved, credentials, nonces)).code == "signature_invalid"


async def test_tampered_query_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, method="GET", url=LIST_URL, body=b"", idempotency_key=None)
    moved = replace(request, url=LIST_URL.replace("0001", "0002"))
    assert (await refused(moved, credentials, nonces)).code == "signature_invalid"


async def test_tampered_method_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice, method="GET", url=f"{BASE}/v1/payments/pay_1", body=b"")
    assert (
        await refused(replace(request, method="DELETE"), credentials, nonces)
    ).code == "signature_invalid"


async def test_tampered_idempotency_key_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = with_headers(signed(alice), Idempotency_Key="idem-2")
    assert (await refused(request, credentials, nonces)).code == "signature_invalid"


async def test_unknown_keyid_is_invalid(
    credentials: dict[str, Credential], nonces: MemoryNonceStore, algorithm: str
) -> None:
    mallory = make_portal("mallory", algorithm)
    problem = await refused(signed(mallory), credentials, nonces)
    assert problem.code == "signature_invalid"
    assert "keyid" in problem.detail


async def test_another_portals_key_under_a_keyid_is_invalid(
    alice: Portal, bob: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(bob, keyid=alice.keyid)
    assert (await refused(request, credentials, nonces)).code == "signature_invalid"


async def test_alg_different_from_the_registered_one_is_invalid(
    alice: Portal, nonces: MemoryNonceStore, algorithm: str
) -> None:
    other = "hmac-sha256" if algorithm == "ed25519" else "ed25519"
    impostor = make_portal(alice.keyid, other)  # signs with the other algorithm's key
    problem = await refused(signed(impostor), {alice.keyid: alice.credential}, nonces)
    assert problem.code == "signature_invalid"
    assert "alg" in problem.detail


async def test_alg_edited_in_the_header_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore, algorithm: str
) -> None:
    request = signed(alice)
    other = "hmac-sha256" if algorithm == "ed25519" else "ed25519"
    edited = request.headers["Signature-Input"].replace(f'alg="{algorithm}"', f'alg="{other}"')
    problem = await refused(with_headers(request, Signature_Input=edited), credentials, nonces)
    assert problem.code == "signature_invalid"


@pytest.mark.parametrize(
    ("url", "body", "idempotency_key", "left_out"),
    [
        (CREATE_URL, BODY, "idem-1", "idempotency-key"),
        (CREATE_URL, BODY, "idem-1", "content-digest"),
        (CREATE_URL, BODY, "idem-1", "content-type"),
        (LIST_URL, b"", None, "@query"),
        (LIST_URL, b"", None, "@path"),
        (LIST_URL, b"", None, "@method"),
    ],
)
async def test_required_component_not_covered_is_invalid(
    alice: Portal,
    credentials: dict[str, Credential],
    nonces: MemoryNonceStore,
    url: str,
    body: bytes,
    idempotency_key: str | None,
    left_out: str,
) -> None:
    full = payhub.portal.required_components(
        url, has_body=bool(body), has_idempotency_key=idempotency_key is not None
    )
    covered = [name for name in full if name != left_out]
    request = signed(
        alice,
        method="POST" if body else "GET",
        url=url,
        body=body,
        idempotency_key=idempotency_key,
        covered_components=covered,
    )
    problem = await refused(request, credentials, nonces)
    assert problem.code == "signature_invalid"
    assert left_out in problem.detail


async def test_more_than_one_signature_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice)
    first_input, first_sig = request.headers["Signature-Input"], request.headers["Signature"]
    second = with_headers(
        request,
        Signature_Input=first_input + ", " + first_input.replace("sig1=", "sig2=", 1),
        Signature=first_sig + ", " + first_sig.replace("sig1=", "sig2=", 1),
    )
    assert (await refused(second, credentials, nonces)).code == "signature_invalid"


@pytest.mark.parametrize(
    "signature_input",
    [
        "sig1=",
        "not a dictionary",
        'sig1="@method"',
        'sig1=("@method" "@path";keyid="alice"',
        "sig1=:AAAA:",
        'sig1=("@method"), sig1=("@path")',
        "sig1=(@method)",
        'sig1=("@method");keyid="é"',
    ],
)
async def test_unparsable_signature_input_is_invalid(
    alice: Portal,
    credentials: dict[str, Credential],
    nonces: MemoryNonceStore,
    signature_input: str,
) -> None:
    request = with_headers(signed(alice), Signature_Input=signature_input)
    assert (await refused(request, credentials, nonces)).code == "signature_invalid"


async def test_signature_that_is_not_a_byte_sequence_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = with_headers(signed(alice), Signature='sig1="c2lnbmF0dXJl"')
    assert (await refused(request, credentials, nonces)).code == "signature_invalid"


# --- metadata parameters, with the hand-written signer ----------------------------------------


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    digest = hashlib.new(algorithm.replace("-", ""), body).digest()
    return f"{algorithm}=:{base64.b64encode(digest).decode()}:"


def hand_sign(
    portal: Portal,
    method: str,
    url: str,
    headers: dict[str, str],
    components: list[str],
    params: list[tuple[str, str | int]],
    label: str = "sig1",
) -> dict[str, str]:
    """An independent RFC 9421 signer: the §2.5 signature base by string concatenation."""
    parts = urlsplit(url)
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    lines = []
    for component in components:
        if component == "@method":
            value = method
        elif component == "@path":
            value = parts.path or "/"
        elif component == "@query":
            value = "?" + parts.query
        elif component == "@authority":
            value = parts.netloc.lower()
        else:
            value = lowered[component]
        lines.append(f'"{component}": {value}')
    signature_params = "(" + " ".join(f'"{c}"' for c in components) + ")"
    for name, param in params:
        signature_params += f";{name}={param}" if isinstance(param, int) else f';{name}="{param}"'
    lines.append(f'"@signature-params": {signature_params}')
    base = "\n".join(lines).encode("ascii")
    if isinstance(portal.signing_key, Ed25519PrivateKey):
        signature = portal.signing_key.sign(base)
    else:
        signature = hmac.new(portal.signing_key, base, hashlib.sha256).digest()
    return {
        **headers,
        "Signature-Input": f"{label}={signature_params}",
        "Signature": f"{label}=:{base64.b64encode(signature).decode()}:",
    }


def hand_signed_create(portal: Portal, params: list[tuple[str, str | int]]) -> SignedRequest:
    headers = {
        "Content-Type": JSON,
        "Content-Digest": content_digest(BODY),
        "Idempotency-Key": "idem-hand",
    }
    components = ["@method", "@path", "content-digest", "content-type", "idempotency-key"]
    signed_headers = hand_sign(portal, "POST", CREATE_URL, headers, components, params)
    return SignedRequest("POST", CREATE_URL, signed_headers, BODY)


async def test_hand_written_rfc9421_signature_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore, algorithm: str
) -> None:
    request = hand_signed_create(
        alice,
        [("created", NOW_TS), ("keyid", "alice"), ("nonce", "hand-1"), ("alg", algorithm)],
    )
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


async def test_hand_written_signature_with_query_and_authority_is_accepted(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    url = "https://Hub.Example/v1/payments?dossier=H29.17-261127-0001&x=%C3%A9"
    headers = hand_sign(
        alice,
        "GET",
        url,
        {},
        ["@method", "@authority", "@path", "@query"],
        [("keyid", "alice"), ("created", NOW_TS), ("nonce", "hand-q")],
        label="anything",
    )
    request = SignedRequest("GET", url, headers)
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


def test_sdk_signature_verifies_by_hand() -> None:
    """The other direction: what the SDK sends is a plain RFC 9421 Ed25519 signature."""
    portal = make_portal("alice", "ed25519")
    headers = sign_headers(
        "POST",
        CREATE_URL,
        keyid="alice",
        key=portal.signing_key,
        created=NOW,
        body=BODY,
        content_type=JSON,
        idempotency_key="idem-1",
        nonce="n-1",
    )
    assert headers["Content-Digest"] == content_digest(BODY)
    label, _, signature_params = headers["Signature-Input"].partition("=")
    assert signature_params == (
        '("@method" "@path" "content-digest" "content-type" "idempotency-key")'
        f';created={NOW_TS};keyid="alice";alg="ed25519";nonce="n-1"'
    )
    base = "\n".join(
        [
            '"@method": POST',
            '"@path": /v1/payments',
            f'"content-digest": {content_digest(BODY)}',
            '"content-type": application/json',
            '"idempotency-key": idem-1',
            f'"@signature-params": {signature_params}',
        ]
    ).encode()
    signature = base64.b64decode(headers["Signature"].removeprefix(f"{label}=").strip(":"))
    portal.credential.key.verify(signature, base)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ([("created", NOW_TS), ("nonce", "n")], "keyid"),
        ([("keyid", "alice"), ("nonce", "n")], "created"),
        ([("created", NOW_TS), ("keyid", "alice")], "nonce"),
        ([("created", str(NOW_TS)), ("keyid", "alice"), ("nonce", "n")], "created"),
        ([("created", NOW_TS), ("keyid", "alice"), ("nonce", "")], "nonce"),
    ],
)
async def test_required_parameters(
    alice: Portal,
    credentials: dict[str, Credential],
    nonces: MemoryNonceStore,
    params: list[tuple[str, str | int]],
    detail: str,
) -> None:
    problem = await refused(hand_signed_create(alice, params), credentials, nonces)
    assert problem.code == "signature_invalid"
    assert detail in problem.detail


async def test_unknown_signature_parameter_is_invalid(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    params: list[tuple[str, str | int]] = [
        ("created", NOW_TS),
        ("keyid", "alice"),
        ("nonce", "n"),
        ("colour", "blue"),
    ]
    problem = await refused(hand_signed_create(alice, params), credentials, nonces)
    assert problem.code == "signature_invalid"


async def test_passed_expires_is_expired(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    params: list[tuple[str, str | int]] = [
        ("created", NOW_TS - 10),
        ("expires", NOW_TS - 1),
        ("keyid", "alice"),
        ("nonce", "n"),
    ]
    problem = await refused(hand_signed_create(alice, params), credentials, nonces)
    assert problem.code == "signature_expired"


# --- signature_expired --------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-301, 301, -86400, 10**9])
async def test_created_more_than_300_seconds_away_is_expired(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore, skew: int
) -> None:
    request = signed(alice, created=NOW + timedelta(seconds=skew))
    problem = await refused(request, credentials, nonces)
    assert problem.code == "signature_expired"
    assert problem.status == 401


async def test_expired_beats_bad_signature(
    alice: Portal, bob: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(bob, keyid=alice.keyid, created=NOW - timedelta(seconds=301))
    assert (await refused(request, credentials, nonces)).code == "signature_expired"


# --- digest_mismatch ----------------------------------------------------------------------


async def test_tampered_body_is_digest_mismatch(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice)
    tampered = replace(request, body=BODY.replace(b"2550000", b"2550001"))
    problem = await refused(tampered, credentials, nonces)
    assert problem.code == "digest_mismatch"
    assert problem.status == 400


async def test_missing_content_digest_with_full_coverage_claim_is_digest_mismatch(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = with_headers(signed(alice), Content_Digest=None)
    problem = await refused(request, credentials, nonces)
    assert problem.code == "digest_mismatch"


async def test_body_without_content_digest_not_covered_is_digest_mismatch(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    """A client that sends no digest cannot cover one: the answer names the digest."""
    request = signed(
        alice, covered_components=["@method", "@path", "content-type", "idempotency-key"]
    )
    request = with_headers(request, Content_Digest=None)
    problem = await refused(request, credentials, nonces)
    assert problem.code == "digest_mismatch"
    assert problem.status == 400
    assert len(nonces) == 0


async def test_digest_recomputed_for_a_new_body_breaks_the_signature(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    body = BODY.replace(b"2550000", b"2550001")
    request = with_headers(replace(signed(alice), body=body), Content_Digest=content_digest(body))
    assert (await refused(request, credentials, nonces)).code == "signature_invalid"


@pytest.mark.parametrize(
    "value",
    [
        "sha-256=:AAAA:",
        "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:",
        "garbage",
        "sha-256=:é:",
        "sha-256=abc",
    ],
)
async def test_malformed_content_digest_is_digest_mismatch(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore, value: str
) -> None:
    request = with_headers(signed(alice), Content_Digest=value)
    assert (await refused(request, credentials, nonces)).code == "digest_mismatch"


# --- signature_replayed --------------------------------------------------------------------


async def test_same_request_twice_is_replayed(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    request = signed(alice)
    await authenticate(request, credentials, nonces, NOW)
    problem = await refused(request, credentials, nonces)
    assert problem.code == "signature_replayed"
    assert problem.status == 401


async def test_same_nonce_with_a_fresh_signature_is_replayed(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    await authenticate(signed(alice, nonce="n-1"), credentials, nonces, NOW)
    later = NOW + timedelta(seconds=30)
    again = signed(alice, nonce="n-1", created=later, idempotency_key="idem-2")
    assert (await refused(again, credentials, nonces, later)).code == "signature_replayed"


async def test_nonce_is_per_keyid_and_lapses_after_600_seconds(
    alice: Portal, bob: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    await authenticate(signed(alice, nonce="n-1"), credentials, nonces, NOW)
    assert await authenticate(signed(bob, nonce="n-1"), credentials, nonces, NOW)
    later = NOW + timedelta(seconds=601)
    reuse = signed(alice, nonce="n-1", created=later)
    assert await authenticate(reuse, credentials, nonces, later) is alice.credential


async def test_forged_requests_do_not_burn_nonces(
    alice: Portal, bob: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    forged = signed(bob, keyid=alice.keyid, nonce="n-1")
    assert (await refused(forged, credentials, nonces)).code == "signature_invalid"
    assert len(nonces) == 0
    assert await authenticate(signed(alice, nonce="n-1"), credentials, nonces, NOW)


async def test_memory_nonce_store_forgets_expired_nonces() -> None:
    store = MemoryNonceStore(lifetime=timedelta(seconds=600))
    for index in range(5):
        claimed_at = NOW + timedelta(seconds=index)
        assert await store.claim("k", f"n{index}", claimed_at + timedelta(seconds=600))
    assert len(store) == 5
    assert not await store.claim("k", "n0", NOW + timedelta(seconds=1199))  # claimed at +599
    assert len(store) == 5
    assert await store.claim("k", "n9", NOW + timedelta(seconds=1202))  # claimed at +602
    assert len(store) == 3  # n0..n2 expired by then; n9 added
    assert await store.prune(NOW + timedelta(seconds=10_000)) == 3
    assert len(store) == 0


# --- the pieces around authenticate() -------------------------------------------------------


def test_credential_refuses_weak_or_mismatched_keys() -> None:
    with pytest.raises(ConfigError):
        Credential("k", PrincipalKind.PORTAL, "p", "hmac-sha256", b"short")
    with pytest.raises(ConfigError):
        Credential("k", PrincipalKind.PORTAL, "p", "ed25519", b"x" * 32)
    with pytest.raises(ConfigError):
        Credential("k", PrincipalKind.FINANCE, "p", "rsa-pss-sha512", b"x" * 32)


def test_credential_repr_hides_the_key() -> None:
    secret = b"s3cret-s3cret-s3cret-s3cret-s3cret"
    credential = Credential("k", PrincipalKind.FINANCE, "f", "hmac-sha256", secret)
    assert "s3cret" not in repr(credential)
    assert hash(credential) == hash(replace(credential))


async def test_signed_request_from_aiohttp_keeps_the_raw_target(
    alice: Portal, credentials: dict[str, Credential], nonces: MemoryNonceStore
) -> None:
    url = "http://hub.example/v1/payments?dossier=a%7Eb+c"
    headers = sign_headers(
        "GET", url, keyid="alice", key=alice.signing_key, created=NOW, nonce="aio"
    )
    raw = make_mocked_request(
        "GET",
        "/v1/payments?dossier=a%7Eb+c",
        headers=CIMultiDict({"Host": "hub.example", **headers}),
    )
    request = SignedRequest.from_aiohttp(raw, b"")
    assert request.url == url
    assert await authenticate(request, credentials, nonces, NOW) is alice.credential


def test_client_urls_and_headers() -> None:
    portal = make_portal("alice", "ed25519")
    client = PortalClient(
        None,  # type: ignore[arg-type]  # building URLs and headers needs no session
        "https://hub.example/",
        keyid="alice",
        key=portal.signing_key,
        clock=lambda: NOW,
    )
    assert client.url("/v1/payments", {"dossier": "H29.17-1"}) == LIST_URL.replace(
        "H29.17-261127-0001", "H29.17-1"
    )
    headers = client.sign_headers("GET", client.url("/v1/events"))
    assert f";created={NOW_TS};" in headers["Signature-Input"]
    first, second = (
        client.sign_headers("GET", client.url("/v1/events"))["Signature-Input"] for _ in range(2)
    )
    assert first != second  # a fresh nonce every time
    with pytest.raises(ValueError, match="32 bytes"):
        PortalClient(None, BASE, keyid="k", key=b"short")  # type: ignore[arg-type]


def test_portal_package_exports() -> None:
    assert sorted(payhub.portal.__all__) == sorted(
        name
        for name in dir(payhub.portal)
        if not name.startswith("_") and name not in ("client", "receiver", "rfc9421", "webhooks")
    )


# --- fuzzing: whatever a client sends, the answer is a ProblemError --------------------------


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (the memory store does not), without a loop."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("authenticate() suspended unexpectedly")


FUZZ_PORTAL = make_portal("alice", "ed25519")
FUZZ_CREDENTIALS = {"alice": FUZZ_PORTAL.credential}
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=80)
HEADER_NAMES = st.sampled_from(
    [
        "Signature",
        "Signature-Input",
        "signature-input",
        "Content-Digest",
        "Content-Type",
        "Idempotency-Key",
        "X-Other",
    ]
)
COMPONENTS = st.sampled_from(
    [
        '"@method"',
        '"@path"',
        '"@query"',
        '"@authority"',
        '"@target-uri"',
        '"@request-target"',
        '"@scheme"',
        '"@status"',
        '"@signature-params"',
        '"@query-param";name="dossier"',
        '"@query-param"',
        '"@query-param";name=1',
        '"@unknown"',
        '"content-digest"',
        '"content-digest";sf',
        '"content-digest";key="sha-256"',
        '"content-digest";key="md5"',
        '"content-type";bs',
        '"content-type";sf',
        '"content-type";tr',
        '"content-type";req',
        '"idempotency-key"',
        '"x-missing"',
        '"Content-Type"',
        '"@method";foo',
    ]
)
PARAM_VALUES = st.one_of(
    st.integers(),
    st.integers(NOW_TS - 400, NOW_TS + 400),
    st.just(NOW_TS),
    st.sampled_from(['"alice"', '"ed25519"', '"hmac-sha256"', "?1", "1.5", "tok", ":AA==:"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(
        lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'
    ),
)
PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["created", "keyid", "nonce", "alg", "expires", "tag", "x"]), PARAM_VALUES
    ),
    max_size=7,
)


@st.composite
def structured_requests(draw: st.DrawFn) -> SignedRequest:
    """Well-formed-looking signatures with hostile contents, to get past the policy checks
    and into the library's component resolution and verification."""
    body = draw(st.sampled_from([b"", BODY, draw(st.binary(max_size=20))]))
    headers: dict[str, str] = {}
    if draw(st.booleans()) or body:
        headers["Content-Digest"] = draw(st.sampled_from([content_digest(body), "sha-256=:AA==:"]))
    if draw(st.booleans()) or body:
        headers["Content-Type"] = draw(st.sampled_from([JSON, "", "\x00", "a\tb", " x "]))
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(ANY_TEXT)
    path = draw(st.text(max_size=20))
    query = draw(st.sampled_from(["", "?", "?dossier=a", "?dossier=a&dossier=b", "?%zz", "?é"]))
    method = draw(st.sampled_from(["GET", "POST", "get", "", "GET\n"]))
    url = f"https://hub.example/{path}{query}"

    components = [
        f'"{name}"'
        for name in payhub.portal.required_components(
            url, has_body=bool(body), has_idempotency_key="Idempotency-Key" in headers
        )
    ]
    if not draw(st.integers(0, 9)):
        components = []
    components += draw(st.lists(COMPONENTS, max_size=4))
    params: list[tuple[str, object]] = [("created", NOW_TS), ("keyid", '"alice"'), ("nonce", '"n"')]
    if not draw(st.integers(0, 9)):
        params = []
    params += draw(PARAMS)
    label = draw(st.sampled_from(["sig1", "x", "*a"]))
    headers["Signature-Input"] = f"{label}=({' '.join(components)})" + "".join(
        f";{name}={value}" for name, value in params
    )
    headers["Signature"] = f"{label}=:{base64.b64encode(draw(st.binary(max_size=70))).decode()}:"
    return SignedRequest(method, url, headers, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=st.dictionaries(HEADER_NAMES, ANY_TEXT, max_size=6), body=st.binary(max_size=40))
def test_fuzzed_header_values_only_ever_give_problems(headers: dict[str, str], body: bytes) -> None:
    request = SignedRequest("POST", CREATE_URL, headers, body)
    with pytest.raises(ProblemError):
        run_now(authenticate(request, FUZZ_CREDENTIALS, MemoryNonceStore(), NOW))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=structured_requests())
def test_fuzzed_structured_signatures_only_ever_give_problems(request: SignedRequest) -> None:
    with pytest.raises(ProblemError):
        run_now(authenticate(request, FUZZ_CREDENTIALS, MemoryNonceStore(), NOW))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["Signature", "Signature-Input", "Content-Digest", "Idempotency-Key"]),
    start=st.integers(0, 200),
    length=st.integers(0, 10),
    insert=ANY_TEXT,
)
def test_mutated_valid_headers_only_ever_give_problems(
    name: str, start: int, length: int, insert: str
) -> None:
    """Mutations the parser normalises away (spaces, padding) may still verify; fine."""
    request = signed(FUZZ_PORTAL, nonce="fuzz")
    value = request.headers[name]
    mutated = value[:start] + insert + value[start + length :]
    attempt = with_headers(request, **{name.replace("-", "_"): mutated})
    try:
        run_now(authenticate(attempt, FUZZ_CREDENTIALS, MemoryNonceStore(), NOW))
    except ProblemError:
        pass


# --- libsodium verifies exactly what OpenSSL verifies --------------------------------------


def _openssl_verifies(key: Ed25519PrivateKey, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.public_key().verify(signature, message)
    except InvalidSignature:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=600),
    tamper=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 63), st.integers(1, 255)),  # one byte of the signature
        st.integers(0, 80),  # cut to this length
        st.just("other message"),
    ),
)
def test_ed25519_verification_agrees_with_openssl(
    seed: bytes, message: bytes, tamper: object
) -> None:
    from payhub.api.auth import ed25519_verifies

    key = Ed25519PrivateKey.from_private_bytes(seed)
    credential = Credential("k", PrincipalKind.PORTAL, "p", "ed25519", key.public_key())
    signature = key.sign(message)
    if isinstance(tamper, tuple):
        at, flip = tamper
        signature = signature[:at] + bytes([signature[at] ^ flip]) + signature[at + 1 :]
    elif isinstance(tamper, int):
        signature = signature[:tamper]
    elif tamper == "other message":
        message += b"!"
    expected = _openssl_verifies(key, signature, message)
    assert ed25519_verifies(credential, signature, message) is expected
    assert expected is (tamper is None or (isinstance(tamper, int) and tamper >= 64))


def test_an_ed25519_signature_under_another_key_does_not_verify() -> None:
    from payhub.api.auth import ed25519_verifies

    signer, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    credential = Credential("k", PrincipalKind.PORTAL, "p", "ed25519", other.public_key())
    assert not ed25519_verifies(credential, signer.sign(b"base"), b"base")
    hmac_credential = Credential("h", PrincipalKind.PORTAL, "p", "hmac-sha256", b"s" * 32)
    assert not ed25519_verifies(hmac_credential, signer.sign(b"base"), b"base")


# --- the plain Content-Digest reading agrees with the library's ---------------------------


def _library_accepts(value: str, body: bytes) -> bool:
    from http_message_signatures import ContentDigest, HTTPMessageSignaturesException

    try:
        ContentDigest.verify(value, body)
    except (HTTPMessageSignaturesException, ValueError, TypeError):
        return False
    return True


def _digest_values() -> st.SearchStrategy[tuple[str, bytes]]:
    def shaped(body: bytes, other: bytes, algorithm: str, edit: tuple[int, str] | None) -> str:
        hasher = hashlib.sha256 if algorithm == "sha-256" else hashlib.sha512
        value = f"{algorithm}=:{base64.b64encode(hasher(other or body).digest()).decode()}:"
        if edit is not None:
            at, text = edit
            at %= len(value) + 1
            value = value[:at] + text + value[at + 1 :]
        return value

    edits = st.none() | st.tuples(
        st.integers(0, 100),
        st.sampled_from(["", "=", "==", "A", "-", "_", " ", ":", ",", ";a=1", "sha-256"]),
    )
    return st.builds(
        lambda body, other, algorithm, edit: (shaped(body, other, algorithm, edit), body),
        st.binary(max_size=64),
        st.binary(max_size=4),
        st.sampled_from(["sha-256", "sha-512", "sha-384"]),
        edits,
    )


@settings(max_examples=1500, deadline=None)
@given(case=_digest_values())
def test_plain_digest_reading_agrees_with_the_library(case: tuple[str, bytes]) -> None:
    from payhub.api.auth import plain_digest_matches

    value, body = case
    plain = plain_digest_matches(value, body)
    if plain is not None:
        assert plain is _library_accepts(value, body), value


def test_the_common_digest_shapes_are_read_plainly() -> None:
    from payhub.api.auth import plain_digest_matches

    body = b'{"amount": 150000}'
    for algorithm, hasher in (("sha-256", hashlib.sha256), ("sha-512", hashlib.sha512)):
        good = f"{algorithm}=:{base64.b64encode(hasher(body).digest()).decode()}:"
        assert plain_digest_matches(good, body) is True
        assert plain_digest_matches(good, body + b" ") is False
    assert plain_digest_matches("sha-256=:AAAA:, sha-512=:AAAA:", body) is None
    assert plain_digest_matches("sha-256=:AAAA:;x=1", body) is None
