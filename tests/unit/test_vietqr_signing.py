"""The VietQR connector's signature check: exactly the signed bytes, exactly the signature.

Properties over both accepted key types (ECDSA P-256, RSA-PSS): the untouched document is
read; changing any one byte of the body, of the signature bytes, or any character of the
header's base64 text is refused before anything in the document is trusted.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from banks.vietqr import signing
from banks.vietqr.cash_report import Account, Credit, notification
from banks.vietqr.connector import VietqrConnector
from payhub.connectors.port import ConfirmationStatus, InboundMessage
from payhub.errors import ConfigError, ConfirmationMalformed, ConfirmationSignatureInvalid

ACCOUNT = Account(bin="970436", number="0011004125678")
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


KEYS = {
    "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
    "rsa-pss": rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


def connector(kind: str) -> VietqrConnector:
    options = {"bin": ACCOUNT.bin, "account": ACCOUNT.number, "bank_public_key": _pem(KEYS[kind])}
    return VietqrConnector("vietqr", options, None)  # type: ignore[arg-type]


CONNECTORS = {kind: connector(kind) for kind in KEYS}
BODY = notification(
    "VQR1",
    datetime(2026, 11, 28, 3, 0, tzinfo=UTC),
    ACCOUNT,
    [Credit("FT1", "NPS1", 2_550_000, "MBVCB.1234567.PH0000000000.CT tu 0123", datetime.now(UTC))],
)
SIGNATURES = {kind: signing.sign(key, BODY) for kind, key in KEYS.items()}


def message(body: bytes, header: str) -> InboundMessage:
    return InboundMessage("POST", {}, {signing.HEADER: header}, body)


kinds = st.sampled_from(sorted(KEYS))


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_the_signed_document_is_read(kind: str) -> None:
    (credit,) = CONNECTORS[kind].parse_confirmation(message(BODY, SIGNATURES[kind]))

    assert credit.amount == 2_550_000
    assert credit.status is ConfirmationStatus.SUCCEEDED
    assert credit.bank_transaction_id == "FT1"


@settings(max_examples=300, deadline=None)
@given(kind=kinds, data=st.data())
def test_any_byte_changed_in_the_body_is_refused(kind: str, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(BODY) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(BODY)
    changed[index] ^= flip

    with pytest.raises(ConfirmationSignatureInvalid):
        CONNECTORS[kind].parse_confirmation(message(bytes(changed), SIGNATURES[kind]))


@settings(max_examples=300, deadline=None)
@given(kind=kinds, data=st.data())
def test_any_byte_changed_in_the_signature_is_refused(kind: str, data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode(SIGNATURES[kind]))
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))

    with pytest.raises(ConfirmationSignatureInvalid):
        CONNECTORS[kind].parse_confirmation(message(BODY, base64.b64encode(raw).decode()))


@settings(max_examples=300, deadline=None)
@given(kind=kinds, data=st.data())
def test_any_character_changed_in_the_header_is_refused(kind: str, data: st.DataObject) -> None:
    header = SIGNATURES[kind]
    index = data.draw(st.integers(0, len(header) - 1))
    replacement = data.draw(st.sampled_from(BASE64 + "=").filter(lambda c: c != header[index]))
    changed = header[:index] + replacement + header[index + 1 :]

    with pytest.raises(ConfirmationSignatureInvalid):
        CONNECTORS[kind].parse_confirmation(message(BODY, changed))


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=512))
def test_a_signature_verifies_only_its_own_body(body: bytes) -> None:
    key = KEYS["ecdsa-p256"]
    assert signing.verify(key.public_key(), body, signing.sign(key, body))
    assert not signing.verify(key.public_key(), body + b"\0", signing.sign(key, body))


def test_the_header_is_found_whatever_its_case() -> None:
    lower = InboundMessage("POST", {}, {signing.HEADER.lower(): SIGNATURES["rsa-pss"]}, BODY)

    assert len(CONNECTORS["rsa-pss"].parse_confirmation(lower)) == 1


def test_no_header_is_refused() -> None:
    with pytest.raises(ConfirmationSignatureInvalid):
        CONNECTORS["ecdsa-p256"].parse_confirmation(InboundMessage("POST", {}, {}, BODY))


def test_a_signed_document_for_another_account_is_malformed() -> None:
    other = notification("VQR2", datetime.now(UTC), Account("970436", "999"), [])
    key = KEYS["ecdsa-p256"]

    with pytest.raises(ConfirmationMalformed, match="another account"):
        CONNECTORS["ecdsa-p256"].parse_confirmation(message(other, signing.sign(key, other)))


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "P-256"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048"),
    ],
)
def test_weak_or_other_bank_keys_are_refused_at_start(key: Any, problem: str) -> None:
    options = {"bin": ACCOUNT.bin, "account": ACCOUNT.number, "bank_public_key": _pem(key)}

    assert any(problem in p for p in VietqrConnector.check_options(options))
    with pytest.raises(ConfigError):
        VietqrConnector("vietqr", options, None)  # type: ignore[arg-type]


def test_a_base64_spelling_of_the_same_bytes_is_refused() -> None:
    """RSA-2048's 256 bytes end in ``==``: the last letter before them has 4 unused bits.

    Setting them gives another text that decodes to the very same signature; a lenient
    decoder would accept it, so a change of the header would go unnoticed.
    """
    header = SIGNATURES["rsa-pss"]
    assert header.endswith("==")
    last = BASE64.index(header[-3])
    spelled = header[:-3] + BASE64[last | 0b1111 if last & 0b1111 != 0b1111 else last & ~1] + "=="
    assert spelled != header
    assert base64.b64decode(spelled) == base64.b64decode(header)

    with pytest.raises(ConfirmationSignatureInvalid):
        CONNECTORS["rsa-pss"].parse_confirmation(message(BODY, spelled))
