"""The hub's direct signature base equals the http-message-signatures library's.

``plain_signature_base`` builds the RFC 9421 base for the common case without the
library (it is half the cost of authenticating a request); for every generated request
it must produce exactly the library's bytes, or decline and leave the request to it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import algorithms
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from payhub.api.auth import (
    Credential,
    MemoryNonceStore,
    PrincipalKind,
    SignedRequest,
    _HubVerifier,
    _parse_common,
    _parse_signature,
    _parse_with_library,
    authenticate,
    plain_signature_base,
)
from payhub.errors import ProblemError
from payhub.portal.client import sign_headers

KEY = Ed25519PrivateKey.generate()
CREDENTIAL = Credential(
    keyid="demo", kind=PrincipalKind.PORTAL, principal="demo", algorithm="ed25519",
    key=KEY.public_key(),
)  # fmt: skip
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)

segment = st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@", min_size=1, max_size=8) | st.sampled_from(
    ["%2F", "%7E", "%20", "%C3%A9", "a%2fb"]
)
query = st.sampled_from(["", "dossier=H29.17", "a=1&b=%20x", "x=%7E&y=~", "k", "a=b=c&&d"])
header_value = st.text(alphabet=" \tabcXYZ019-_/;=,.:", max_size=20)
COMPONENTS = ["@method", "@path", "@query", "@scheme", "content-type", "idempotency-key", "x-extra"]


def library_base(request: SignedRequest, headers: dict[str, str]) -> bytes:
    parsed = _parse_signature(headers["Signature-Input"], headers["Signature"])
    verifier = _HubVerifier(signature_algorithm=algorithms.ED25519, key_resolver=None)
    base, _, _ = verifier._build_signature_base(
        request, covered_component_ids=list(parsed.members), signature_params=parsed.members.params
    )
    return str(base).encode()


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.lists(segment, min_size=1, max_size=4),
    query=query,
    covered=st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=7, unique=True),
    values=st.lists(header_value, min_size=3, max_size=3),
    repeated=st.booleans(),
)
def test_direct_base_equals_the_library_base(
    method: str, path: list[str], query: str, covered: list[str], values: list[str], repeated: bool
) -> None:
    url = "http://127.0.0.1:8080/" + "/".join(path) + (f"?{query}" if query else "")
    fields = {"content-type": values[0], "idempotency-key": values[1], "x-extra": values[2]}
    headers = sign_headers(
        method, url, keyid="demo", key=KEY, created=NOW, headers=fields, covered_components=covered
    )
    multi = CIMultiDict(headers)
    if repeated:
        multi.add("x-extra", values[0])
    request = SignedRequest(method=method, url=url, headers=multi, body=b"")
    parsed = _parse_signature(headers["Signature-Input"], headers["Signature"])
    direct = plain_signature_base(request, parsed)
    try:
        expected = library_base(request, headers)
    except Exception:
        assert direct is None  # whatever the library refuses, the direct path leaves to it
        return
    if direct is not None:
        assert direct == expected


async def test_an_ordinary_portal_request_takes_the_direct_path() -> None:
    url = "http://127.0.0.1:8080/v1/payments?dossier=H29.17-261127-0001"
    body = b'{"amount": 1}'
    headers = sign_headers(
        "POST", url, keyid="demo", key=KEY, created=NOW, body=body,
        content_type="application/json", idempotency_key="k-1",
    )  # fmt: skip
    request = SignedRequest(method="POST", url=url, headers=CIMultiDict(headers), body=body)
    parsed = _parse_signature(headers["Signature-Input"], headers["Signature"])
    direct = plain_signature_base(request, parsed)
    assert direct is not None
    assert direct == library_base(request, headers)
    assert await authenticate(request, {"demo": CREDENTIAL}, MemoryNonceStore(), NOW) == CREDENTIAL
    forged = dict(headers)
    forged["Idempotency-Key"] = "k-2"
    forged_request = SignedRequest(method="POST", url=url, headers=CIMultiDict(forged), body=body)
    assert plain_signature_base(forged_request, parsed) is not None
    try:
        await authenticate(forged_request, {"demo": CREDENTIAL}, MemoryNonceStore(), NOW)
    except Exception as exc:
        assert getattr(exc, "code", None) == "signature_invalid"
    else:
        raise AssertionError("a changed covered header must not verify")


_LABELS = st.sampled_from(["sig1", "sig1", "a", "*x", "Sig1", "s-1.b"])
_ITEMS = st.sampled_from(
    ['"@method"', '"@path"', '"@query"', '"content-digest"', '"idempotency-key"']
) | st.sampled_from(['"@query-param";name="a"', '"x-extra";sf', '"A"', '"x\\"y"', '"é"', "token"])
_PARAMS = st.fixed_dictionaries(
    {
        "created": st.sampled_from(["1764300000", "0", "-5", "123456789012345"])
        | st.sampled_from(["0123", "-0", "1234567890123456", "1.5", "?1", '"1"']),
        "keyid": st.sampled_from(['"demo"', '"k.1"']) | st.sampled_from(["demo", '""', '"a b"']),
        "nonce": st.sampled_from(['"n-1_x"']) | st.sampled_from(['"a\\\\b"', '"é"', "n"]),
    },
    optional={
        "alg": st.sampled_from(['"ed25519"', "ed25519", '"hmac-sha256"']),
        "expires": st.sampled_from(["1", "01", '"1"']),
        "tag": st.sampled_from(['"t"', "1"]),
        "flag": st.sampled_from(["?1", "?0", "1"]),
    },
)
_SIGNATURES = st.sampled_from(["AAEC", "AAECAw==", "A+/z"]) | st.sampled_from(
    ["AAECAw=", "AAECAx==", "AAECAw", "", "AA EC", "AAEC:;x=1", "AAEC:, b=:AA=="]
)


@settings(max_examples=600)
@given(
    input_label=_LABELS,
    signature_label=st.none() | _LABELS,
    items=st.lists(_ITEMS, max_size=5),
    separator=st.sampled_from([" ", " ", "  "]),
    params=_PARAMS,
    order=st.randoms(use_true_random=False),
    repeat=st.booleans(),
    signature=_SIGNATURES,
)
def test_one_pass_parser_equals_the_library(
    input_label: str,
    signature_label: str | None,
    items: list[str],
    separator: str,
    params: dict[str, str],
    order: Any,
    repeat: bool,
    signature: str,
) -> None:
    """The common-shape parser reads what the structured-field library reads, or declines."""
    pairs = [f";{name}={value}" for name, value in params.items()]
    order.shuffle(pairs)
    if repeat:
        pairs.append(pairs[0])
    signature_input = f"{input_label}=({separator.join(items)}){''.join(pairs)}"
    signature_field = f"{signature_label or input_label}=:{signature}:"

    def outcome(parse: Any) -> Any:
        try:
            return parse(signature_input, signature_field)
        except ProblemError as problem:
            return ("refused", problem.code, problem.detail)

    common = outcome(_parse_common)
    if common is None:
        return
    assert common == outcome(_parse_with_library)


def test_the_sdk_signature_takes_the_one_pass_parser() -> None:
    headers = sign_headers(
        "POST", "http://127.0.0.1/v1/payments", keyid="demo", key=KEY, created=NOW,
        body=b"{}", content_type="application/json", idempotency_key="k-1",
    )  # fmt: skip
    parsed = _parse_common(headers["Signature-Input"], headers["Signature"])
    assert parsed is not None
    assert parsed == _parse_with_library(headers["Signature-Input"], headers["Signature"])
    assert parsed.signature_params == str(parsed.members)
