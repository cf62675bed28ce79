"""The SDK's own RFC 9421 signer writes exactly what the http-message-signatures library
writes (Ed25519 and HMAC signatures are deterministic, so whole fields are compared),
and the SDK imports nothing but aiohttp, cryptography and the standard library."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    MappingKeyResolver,
    algorithms,
)
from hypothesis import given
from hypothesis import strategies as st

from payhub.api.auth import required_components as hub_required_components
from payhub.portal import required_components, sign_headers

ED_KEY = Ed25519PrivateKey.generate()
HMAC_KEY = b"s" * 32
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


class _Outgoing:
    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def library_headers(
    method: str,
    url: str,
    key: Ed25519PrivateKey | bytes,
    fields: dict[str, str],
    covered: list[str],
    body: bytes,
    include_alg: bool,
) -> dict[str, str]:
    outgoing = _Outgoing(method, url, dict(fields))
    if body:
        outgoing.headers["Content-Digest"] = ContentDigest.create(body)
    algorithm = algorithms.ED25519 if isinstance(key, Ed25519PrivateKey) else algorithms.HMAC_SHA256
    signer = HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"demo": key}),
    )
    signer.sign(
        outgoing, key_id="demo", created=NOW, nonce="n-1", label="sig1", include_alg=include_alg,
        covered_component_ids=covered, use_existing_digest=bool(body),
    )  # fmt: skip
    return outgoing.headers


segment = st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@", min_size=1, max_size=8) | st.sampled_from(
    ["%2F", "%7E", "%20", "%C3%A9", "a%2fb"]
)
query = st.sampled_from(["", "dossier=H29.17", "a=1&b=%20x", "x=%7E&y=~", "k", "a=b=c&&d"])
header_value = st.text(alphabet=" \tabcXYZ019-_/;=,.:", max_size=20)
COMPONENTS = [
    "@method", "@path", "@query", "@scheme", "@authority", "@target-uri", "@request-target",
    "content-type", "idempotency-key", "x-extra",
]  # fmt: skip


@given(
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    host=st.sampled_from(["127.0.0.1:8080", "Hub.Example", "hub.example:443", "[::1]:80"]),
    scheme=st.sampled_from(["http", "https"]),
    path=st.lists(segment, min_size=1, max_size=4),
    query=query,
    covered=st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=8, unique=True),
    values=st.lists(header_value, min_size=3, max_size=3),
    body=st.sampled_from([b"", b'{"amount":1}']),
    hmac_key=st.booleans(),
    include_alg=st.booleans(),
)
def test_the_sdk_signs_byte_for_byte_as_the_library(
    method: str, host: str, scheme: str, path: list[str], query: str, covered: list[str],
    values: list[str], body: bytes, hmac_key: bool, include_alg: bool,
) -> None:  # fmt: skip
    url = f"{scheme}://{host}/" + "/".join(path) + (f"?{query}" if query else "")
    fields = {"content-type": values[0], "idempotency-key": values[1], "x-extra": values[2]}
    if body:
        covered = [*covered, "content-digest"]
    key = HMAC_KEY if hmac_key else ED_KEY
    try:
        expected = library_headers(method, url, key, fields, covered, body, include_alg)
    except Exception:
        return  # what the library refuses to sign, a portal cannot send either
    ours = sign_headers(
        method, url, keyid="demo", key=key, created=NOW, body=body, headers=fields,
        covered_components=covered, nonce="n-1", include_alg=include_alg,
    )  # fmt: skip
    assert ours == expected


def test_required_components_are_the_hubs() -> None:
    for url in ("http://h/v1/events", "http://h/v1/payments?dossier=X"):
        for has_body in (False, True):
            for has_key in (False, True):
                assert required_components(
                    url, has_body=has_body, has_idempotency_key=has_key
                ) == hub_required_components(url, has_body=has_body, has_idempotency_key=has_key)


ISOLATED = """
import sys, importlib.abc
ALLOWED_PAYHUB = ("payhub", "payhub.portal")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("http_message_signatures", "http_sf", "sqlalchemy", "structlog", "alembic",
                   "prometheus_client", "tomlkit", "asyncpg", "aiosqlite", "hypothesis"):
            raise ImportError("not allowed in the SDK: " + name)
        if top == "payhub" and not name.startswith(ALLOWED_PAYHUB):
            raise ImportError("not allowed in the SDK: " + name)
        return None
sys.meta_path.insert(0, Block())
import payhub.portal
from payhub.portal import PortalClient, WebhookReceiver, WebhookVerifier
print(sorted(m for m in sys.modules if m.startswith("payhub")))
"""


def test_the_sdk_needs_only_aiohttp_and_cryptography() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "payhub.api" not in done.stdout and "payhub.domain" not in done.stdout
