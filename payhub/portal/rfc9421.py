"""RFC 9421 request signing for the SDK, with the standard library and ``cryptography`` only.

A portal should not need the hub's dependencies to talk to it. This covers what
CONTRACT §1 uses: the derived components ``@method``, ``@path``, ``@query``,
``@scheme``, ``@authority``, ``@target-uri``, ``@request-target`` and plain header
fields, signed with ``ed25519`` or ``hmac-sha256``. Its output is byte for byte what
the ``http-message-signatures`` library produces for the same request (a test holds
it to that), so the hub, which verifies with that library, accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The RFC 9530 ``Content-Digest`` field of ``body``."""
    if algorithm not in DIGESTS:
        raise ValueError(f"unsupported content digest algorithm {algorithm!r}")
    return f"{algorithm}=:{base64.b64encode(DIGESTS[algorithm](body).digest()).decode()}:"


def algorithm_id(key: Ed25519PrivateKey | bytes) -> str:
    return "ed25519" if isinstance(key, Ed25519PrivateKey) else "hmac-sha256"


def _sf_string(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError("signature parameters must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _derived(name: str, method: str, url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    query = "?" + parts.query if "?" in url.partition("#")[0] else ""
    host = (parts.hostname or "").lower()
    if parts.netloc.startswith("[") or ":" in host:
        host = "[" + host + "]"
    port = parts.netloc.rpartition(":")[2] if parts.port is not None else None
    if port is not None and port.lstrip("0") == _DEFAULT_PORTS.get(parts.scheme.lower()):
        port = None
    values = {
        "@method": method,
        "@path": path,
        "@query": query or "?",
        "@scheme": parts.scheme.lower(),
        "@authority": f"{host}:{port}" if port else host,
        "@target-uri": f"{parts.scheme}://{parts.netloc}{path}{query}",
        "@request-target": path + query,
    }
    if name not in values:
        raise ValueError(f"unsupported derived component {name}")
    return values[name]


def signature_base(
    method: str,
    url: str,
    headers: Mapping[str, str],
    covered: Sequence[str],
    params: str,
) -> bytes:
    """The bytes that are signed (RFC 9421 §2.5)."""
    fields = {name.lower(): value for name, value in headers.items()}
    lines = []
    for name in covered:
        if name != name.lower():
            raise ValueError(f"component {name!r} is not lowercase")
        if name.startswith("@"):
            value = _derived(name, method, url)
        elif name in fields:
            value = fields[name].strip(" \t")
        else:
            raise ValueError(f"covered header field {name!r} is not in the request")
        if "\r" in value or "\n" in value:
            raise ValueError(f"component {name!r} contains a newline")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params}')
    base = "\n".join(lines)
    if not base.isascii():
        raise ValueError("the signature base must be ASCII")
    return base.encode()


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    covered: Sequence[str],
    keyid: str,
    key: Ed25519PrivateKey | bytes,
    created: datetime,
    nonce: str,
    label: str,
    include_alg: bool = True,
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` fields for this request."""
    if len(set(covered)) != len(covered):
        raise ValueError("a component is covered twice")
    params = "(" + " ".join(f'"{name}"' for name in covered) + ")"
    params += f";created={int(created.timestamp())};keyid={_sf_string(keyid)}"
    if include_alg:
        params += f";alg={_sf_string(algorithm_id(key))}"
    params += f";nonce={_sf_string(nonce)}"
    base = signature_base(method, url, headers, covered, params)
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(base)
    else:
        signature = hmac.new(key, base, hashlib.sha256).digest()
    return {
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{base64.b64encode(signature).decode()}:",
    }
