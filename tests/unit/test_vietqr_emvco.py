"""VietQR payloads: byte-exact against third-party vectors, strict decoding, CRC detection."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from banks.vietqr.emvco import (
    CrcMismatch,
    MalformedPayload,
    VietQR,
    VietQRError,
    crc16_ccitt_false,
    decode_vietqr,
    encode_vietqr,
    qr_png,
)

VECTORS = Path("/work/shared/data/vectors.json")
STATIC = (
    "00020101021138530010A0000007270123000697041601092576788590208QRIBFTTA53037045802VN6304AE9F"
)
DYNAMIC = (
    "00020101021238530010A0000007270123000697041601092576788590208QRIBFTTA5303704540510000"
    "5802VN62150811Chuyen tien630453E6"
)


def _vietqr_vectors() -> list[dict[str, object]]:
    if not VECTORS.exists():
        pytest.skip("shared vectors not present on this machine")
    return list(json.loads(VECTORS.read_text())["vietqr"]["payloads"])


def test_crc_catalogue_check_value() -> None:
    """CRC-16/CCITT-FALSE's published check value over "123456789"."""
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_banks_md_static_payload_byte_for_byte() -> None:
    qr = VietQR(bin="970416", account="257678859")
    assert encode_vietqr(qr) == STATIC
    assert decode_vietqr(STATIC) == qr
    assert not qr.dynamic


def test_banks_md_dynamic_payload_byte_for_byte() -> None:
    qr = VietQR(bin="970416", account="257678859", amount=10000, purpose="Chuyen tien")
    assert encode_vietqr(qr) == DYNAMIC
    assert decode_vietqr(DYNAMIC) == qr
    assert qr.dynamic


def test_every_shared_vector_encodes_and_decodes() -> None:
    vectors = _vietqr_vectors()
    assert len(vectors) >= 3
    for vector in vectors:
        given_ = vector["input"]
        assert isinstance(given_, dict)
        qr = VietQR(
            bin=given_["bankBin"],
            account=given_["bankNumber"],
            amount=int(given_["amount"]),
            purpose=given_["purpose"],
        )
        assert encode_vietqr(qr) == vector["payload"]
        assert decode_vietqr(str(vector["payload"])) == qr


@pytest.mark.parametrize(
    ("qr", "message"),
    [
        (VietQR(bin="97041", account="1"), "BIN"),
        (VietQR(bin="97041a", account="1"), "BIN"),
        (VietQR(bin="970416", account=""), "account"),
        (VietQR(bin="970416", account="1" * 20), "account"),
        (VietQR(bin="970416", account="12 34"), "account"),
        (VietQR(bin="970416", account="1", amount=0), "amount"),
        (VietQR(bin="970416", account="1", amount=-5), "amount"),
        (VietQR(bin="970416", account="1", amount=10**13), "amount"),
        (VietQR(bin="970416", account="1", amount=1, purpose="x" * 26), "purpose"),
        (VietQR(bin="970416", account="1", amount=1, purpose="Chuyển tiền"), "purpose"),
        (VietQR(bin="970416", account="1", amount=1, purpose=""), "purpose"),
    ],
)
def test_encoder_refuses_what_the_template_cannot_hold(qr: VietQR, message: str) -> None:
    with pytest.raises(VietQRError, match=message):
        encode_vietqr(qr)


def test_encoder_refuses_a_float_amount() -> None:
    with pytest.raises(VietQRError, match="amount"):
        encode_vietqr(VietQR(bin="970416", account="1", amount=10.5))  # type: ignore[arg-type]


def _with_crc(body: str) -> str:
    """A payload with a correct CRC over an arbitrary (possibly bad) body."""
    body += "6304"
    return body + f"{crc16_ccitt_false(body.encode()):04X}"


_GOOD_MERCHANT = "38530010A0000007270123000697041601092576788590208QRIBFTTA"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (DYNAMIC[:-1], "end with the CRC"),
        (DYNAMIC[:40], "end with the CRC"),
        ("", "end with the CRC"),
        (DYNAMIC[:-4] + "53e6", "upper-case hex"),
        (DYNAMIC[:-4] + "0000", "does not match"),
        (DYNAMIC.replace("Chuyen", "Chuyến"), "non-ASCII"),
        (_with_crc("000201010212" + _GOOD_MERCHANT + "5303704540510000"), "58 missing"),
        (_with_crc("00020101021238"), "truncated"),
        (_with_crc("000201010212" + _GOOD_MERCHANT + "53037045802VN"), "without an amount"),
        (_with_crc("000201010211" + _GOOD_MERCHANT + "530370454031005802VN"), "with an amount"),
        (_with_crc("000201010213" + _GOOD_MERCHANT + "53037045802VN"), "'11' or '12'"),
        (_with_crc("000202010211" + _GOOD_MERCHANT + "53037045802VN"), "field 00"),
        (_with_crc("000201010211" + _GOOD_MERCHANT + "53038405802VN"), "field 53"),
        (_with_crc("000201010211" + _GOOD_MERCHANT + "53037045802US"), "field 58"),
        (
            _with_crc("000201010212" + _GOOD_MERCHANT + "5303704540510.005802VN"),
            "whole VND",
        ),
        (
            _with_crc("000201010212" + _GOOD_MERCHANT + "5303704540505000" + "5802VN"),
            "whole VND",
        ),
        (
            _with_crc("000201010211" + _GOOD_MERCHANT.replace("QRIBFTTA", "QRIBFTTC") + "5802VN"),
            "card",
        ),
        (
            _with_crc(
                "000201010211"
                + _GOOD_MERCHANT.replace("A000000727", "A000000728")
                + "53037045802VN"
            ),
            "field 38",
        ),
        (_with_crc("000201010211" + _GOOD_MERCHANT + "53037045802VN5802VN"), "repeated"),
        (_with_crc("0002010102113X53"), "bad tag/length"),
        (
            _with_crc("000201010211" + _GOOD_MERCHANT + "53037045802VN62040800"),
            "purpose",
        ),
    ],
)
def test_decoder_refuses_with_a_clear_error(payload: str, message: str) -> None:
    with pytest.raises(VietQRError, match=message):
        decode_vietqr(payload)


def test_a_bad_crc_is_its_own_error() -> None:
    with pytest.raises(CrcMismatch):
        decode_vietqr(DYNAMIC[:-4] + "0000")
    with pytest.raises(MalformedPayload):
        decode_vietqr(DYNAMIC[:-10])


def test_unknown_emvco_fields_are_read_past() -> None:
    """Tags outside the template (59 name, 60 city) are legal EMVCo: ignored, CRC-covered."""
    body = DYNAMIC[:-8].replace("5802VN", "5802VN5908PAYHUB X6005HANOI")
    assert decode_vietqr(_with_crc(body)) == decode_vietqr(DYNAMIC)


# ------------------------------------------------------------------ properties

_ACCOUNTS = st.text(alphabet="0123456789ABCDEFGHJKabcxyz", min_size=1, max_size=19)
_PURPOSES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=25
)


@st.composite
def vietqrs(draw: st.DrawFn) -> VietQR:
    dynamic = draw(st.booleans())
    return VietQR(
        bin=draw(st.from_regex(r"[0-9]{6}", fullmatch=True)),
        account=draw(_ACCOUNTS),
        amount=draw(st.integers(1, 10**13 - 1)) if dynamic else None,
        purpose=draw(st.none() | _PURPOSES),
    )


@settings(max_examples=500)
@given(vietqrs())
def test_encode_decode_round_trip(qr: VietQR) -> None:
    payload = encode_vietqr(qr)
    assert payload.isascii()
    assert decode_vietqr(payload) == qr


@settings(max_examples=500)
@given(vietqrs(), st.data())
def test_any_single_character_change_is_refused(qr: VietQR, data: st.DataObject) -> None:
    payload = encode_vietqr(qr)
    position = data.draw(st.integers(0, len(payload) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != payload[position]))
    corrupted = payload[:position] + replacement + payload[position + 1 :]
    with pytest.raises(VietQRError):
        decode_vietqr(corrupted)


@settings(max_examples=300)
@given(vietqrs(), st.data())
def test_any_deletion_or_truncation_is_refused(qr: VietQR, data: st.DataObject) -> None:
    payload = encode_vietqr(qr)
    start = data.draw(st.integers(0, len(payload) - 1))
    end = data.draw(st.integers(start + 1, len(payload)))
    with pytest.raises(VietQRError):
        decode_vietqr(payload[:start] + payload[end:])


def test_every_single_character_change_of_a_real_payload_is_refused() -> None:
    """Exhaustive over one payload: every position, every printable ASCII replacement."""
    for position in range(len(DYNAMIC)):
        for code in range(0x20, 0x7F):
            if chr(code) == DYNAMIC[position]:
                continue
            corrupted = DYNAMIC[:position] + chr(code) + DYNAMIC[position + 1 :]
            with pytest.raises(VietQRError):
                decode_vietqr(corrupted)


# ------------------------------------------------------------------ the picture


def test_png_is_the_qr_of_the_payload() -> None:
    png = qr_png(DYNAMIC, scale=4, border=4)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    symbol = segno.make_qr(DYNAMIC, error="m", boost_error=False)
    modules = symbol.symbol_size(scale=1, border=4)[0]
    assert width == height == modules * 4
    assert symbol.mode == "byte"
    assert symbol.error == "M"


def test_png_differs_with_the_payload() -> None:
    assert qr_png(DYNAMIC) != qr_png(STATIC)
