"""The signature on a bank's camt.054 push: PayHub's own convention (BANKS.md, vietqr).

The collecting bank signs the **raw HTTP body**, byte for byte, with its private key and
sends the signature base64-encoded (RFC 4648, padded, no line breaks) in the header
``PayHub-Bank-Signature``. The hub holds the bank's public key (PEM) in the bank's options;
the key's type chooses the algorithm:

- EC P-256: ECDSA with SHA-256, the signature DER-encoded (as X9.62 / RFC 3279 say);
- RSA (2048 bits or more): RSASSA-PSS with SHA-256, MGF1-SHA-256; signed with a salt of
  the digest's length (32 bytes), verified with any salt length the signature carries.

No other key type is accepted, and there is no unsigned path. The base64 text must be
canonical: a text that decodes to the same bytes but is written differently (unused low
bits of the last character set) is refused, so that *any* change of the header's text is
refused, not only changes of the signature bytes.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

HEADER = "PayHub-Bank-Signature"
MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def load_public_key(pem: str) -> PublicKey:
    """The bank's public key from its PEM; ``ValueError`` names what is wrong with it."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("bank_public_key is not a PEM public key") from exc
    return _checked(key)


def load_private_key(pem: str) -> PrivateKey:
    """A bank's private key (the simulator's), unencrypted PKCS#8 or traditional PEM."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("the signing key is not an unencrypted PEM private key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        _checked(key.public_key())
        return key
    raise ValueError("the signing key must be EC P-256 or RSA")


def _checked(key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("an EC bank key must be on curve P-256")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA bank key must have at least {MIN_RSA_BITS} bits")
        return key
    raise ValueError("the bank key must be EC P-256 or RSA")


def sign(key: PrivateKey, body: bytes) -> str:
    """The header value for ``body``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(body, ec.ECDSA(hashes.SHA256()))
    else:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        raw = key.sign(body, pss, hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def verify(key: PublicKey, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is a canonical base64 signature of exactly ``body`` by ``key``."""
    if not header or not header.isascii():
        return False
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        return False
    if base64.b64encode(raw).decode("ascii") != header:
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
        else:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(raw, body, pss, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def new_demo_key_pair() -> tuple[str, str]:
    """A fresh EC P-256 key pair as (private PKCS#8 PEM, public PEM), for a simulated bank."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public
