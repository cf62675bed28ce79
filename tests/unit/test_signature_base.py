"""The hub's direct signature base equals the http-message-signatures library's.

``plain_signature_base`` builds the RFC 9421 base for the common case without the
library (it is half the cost of authenticating a request); for every generated request
it must produce exactly the library's bytes, or decline and leave the request to it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import algorithms
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from payhub.api.auth import (
    Credential,
    MemoryNonceStore,
    PrincipalKind,
    SignedRequest,
    _HubVerifier,
    _parse_signature,
    authenticate,
    plain_signature_base,
)
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
