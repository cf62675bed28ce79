"""Dynamic VietQR payloads: the EMVCo merchant-presented QR of the Napas template.

Pure functions shared by the connector (which shows the payer a QR) and the simulator
(which plays the banking app that scans it), so both read and write the same bytes. The
encoder reproduces the npm ``vietnam-qr-pay`` library byte for byte
(``tests/unit/test_vietqr_emvco.py`` checks the payloads of BANKS.md and
``shared/data/vectors.json``).

A payload is a flat run of TLV fields: a 2-digit tag, a 2-digit length, the value; some
values are themselves TLV runs. The Napas template, in the order it is written::

    00 "01"                          payload format
    01 "11" static | "12" dynamic    point of initiation (12: amount and purpose set)
    38 { 00 "A000000727"             Napas GUID
         01 { 00 BIN (6 digits), 01 account (≤ 19 chars) }
         02 "QRIBFTTA" }             transfer to an account ("QRIBFTTC", a card: refused)
    53 "704"                         VND
    54 amount                        whole VND, digits only (dynamic only)
    58 "VN"
    62 { 08 purpose }                plain printable ASCII, ≤ 25 characters
    63 CRC                           CRC-16/CCITT-FALSE, 4 upper-case hex digits

The CRC covers every character up to and including ``6304``. Why a decoder can trust a
payload that passes it: CRC-16/CCITT (generator x¹⁶+x¹²+x⁵+1) detects every error burst of
16 bits or fewer, and changing one ASCII character is a burst of at most 8 bits, so **any
single-character change before the CRC field is detected**. A change inside ``6304`` or
the four hex digits breaks the structure or the stated CRC. The decoder refuses any
non-ASCII character first (a multi-byte character would shift the bytes, which the burst
argument does not cover), then the CRC, then every length and every field of the template.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Final

import segno

__all__ = [
    "ACCOUNT_MAX_LENGTH",
    "NAPAS_GUID",
    "PURPOSE_MAX_LENGTH",
    "SERVICE_ACCOUNT",
    "CrcMismatch",
    "MalformedPayload",
    "VietQR",
    "VietQRError",
    "crc16_ccitt_false",
    "decode_vietqr",
    "encode_vietqr",
    "qr_png",
]

NAPAS_GUID: Final = "A000000727"
SERVICE_ACCOUNT: Final = "QRIBFTTA"
SERVICE_CARD: Final = "QRIBFTTC"
CURRENCY_VND: Final = "704"
COUNTRY: Final = "VN"
ACCOUNT_MAX_LENGTH: Final = 19
PURPOSE_MAX_LENGTH: Final = 25
AMOUNT_MAX_DIGITS: Final = 13
"""EMVCo caps tag 54 at 13 characters."""
_STATIC: Final = "11"
_DYNAMIC: Final = "12"
_CRC_TAG: Final = "6304"

_BIN = re.compile(r"[0-9]{6}")
_ACCOUNT = re.compile(r"[0-9A-Za-z]{1,19}")
_PURPOSE = re.compile(r"[\x20-\x7e]{1,25}")
_AMOUNT = re.compile(r"[1-9][0-9]{0,12}")
_HEX4 = re.compile(r"[0-9A-F]{4}")


class VietQRError(ValueError):
    """A VietQR payload that cannot be read, or values that cannot be written into one.

    Module-local on purpose: the connector translates it to ``ConfirmationMalformed`` or a
    configuration problem, the simulator to the bank app's own refusal.
    """


class CrcMismatch(VietQRError):
    """The payload's CRC does not match its content: corrupted or edited."""


class MalformedPayload(VietQRError):
    """The payload is not a well-formed Napas VietQR (lengths, tags, values)."""


@dataclass(frozen=True)
class VietQR:
    """What a VietQR says: pay ``amount`` VND to ``account`` at bank ``bin`` for ``purpose``.

    ``amount`` ``None`` is a static QR (the payer types the amount); a dynamic QR sets it.
    """

    bin: str
    account: str
    amount: int | None = None
    purpose: str | None = None

    @property
    def dynamic(self) -> bool:
        return self.amount is not None


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _field(tag: str, value: str) -> str:
    if len(value) > 99:
        raise VietQRError(f"field {tag} longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def encode_vietqr(qr: VietQR) -> str:
    """The payload text of ``qr``; raises ``VietQRError`` for values the template cannot hold."""
    if not _BIN.fullmatch(qr.bin):
        raise VietQRError("bank BIN must be 6 digits")
    if not _ACCOUNT.fullmatch(qr.account):
        raise VietQRError(f"account must be 1–{ACCOUNT_MAX_LENGTH} letters or digits")
    if qr.amount is not None and (
        type(qr.amount) is not int or not _AMOUNT.fullmatch(str(qr.amount))
    ):
        raise VietQRError(f"amount must be a whole VND int from 1 to {AMOUNT_MAX_DIGITS} digits")
    if qr.purpose is not None and not _PURPOSE.fullmatch(qr.purpose):
        raise VietQRError(
            f"purpose must be 1–{PURPOSE_MAX_LENGTH} printable ASCII characters (no diacritics)"
        )
    beneficiary = _field("00", qr.bin) + _field("01", qr.account)
    merchant = _field("00", NAPAS_GUID) + _field("01", beneficiary) + _field("02", SERVICE_ACCOUNT)
    parts = [
        _field("00", "01"),
        _field("01", _DYNAMIC if qr.dynamic else _STATIC),
        _field("38", merchant),
        _field("53", CURRENCY_VND),
    ]
    if qr.amount is not None:
        parts.append(_field("54", str(qr.amount)))
    parts.append(_field("58", COUNTRY))
    if qr.purpose is not None:
        parts.append(_field("62", _field("08", qr.purpose)))
    body = "".join(parts) + _CRC_TAG
    return body + f"{crc16_ccitt_false(body.encode('ascii')):04X}"


def _fields(text: str, where: str) -> dict[str, str]:
    """The TLV fields of ``text``; every length must fit and no tag may repeat."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(text):
        head = text[position : position + 4]
        if len(head) < 4:
            raise MalformedPayload(f"{where}: field header {head!r} truncated at offset {position}")
        if not head.isdigit():
            raise MalformedPayload(f"{where}: bad tag/length {head!r} at offset {position}")
        tag, length = head[:2], int(head[2:])
        value = text[position + 4 : position + 4 + length]
        if len(value) != length:
            raise MalformedPayload(
                f"{where}: field {tag} says {length} characters, {len(value)} left (truncated?)"
            )
        if tag in fields:
            raise MalformedPayload(f"{where}: field {tag} repeated")
        fields[tag] = value
        position += 4 + length
    return fields


def _require(fields: dict[str, str], tag: str, where: str) -> str:
    try:
        return fields[tag]
    except KeyError:
        raise MalformedPayload(f"{where}: field {tag} missing") from None


def _expect(fields: dict[str, str], tag: str, expected: str, where: str) -> None:
    value = _require(fields, tag, where)
    if value != expected:
        raise MalformedPayload(f"{where}: field {tag} is {value!r}, expected {expected!r}")


def decode_vietqr(payload: str) -> VietQR:
    """Read a Napas VietQR payload; raises ``CrcMismatch`` or ``MalformedPayload``.

    Fields outside the template (59 merchant name, 60 city, …, other merchant accounts
    26–51) are allowed by EMVCo and ignored; the CRC still covers them.
    """
    if not payload.isascii():
        raise MalformedPayload("payload holds a non-ASCII character")
    if len(payload) < 8 or payload[-8:-4] != _CRC_TAG:
        raise MalformedPayload("payload does not end with the CRC field 6304XXXX (truncated?)")
    stated = payload[-4:]
    if not _HEX4.fullmatch(stated):
        raise MalformedPayload(f"CRC {stated!r} is not 4 upper-case hex digits")
    computed = f"{crc16_ccitt_false(payload[:-4].encode('ascii')):04X}"
    if stated != computed:
        raise CrcMismatch(f"CRC {stated} does not match the content ({computed})")
    top = _fields(payload[:-8], "payload")
    _expect(top, "00", "01", "payload")
    initiation = _require(top, "01", "payload")
    if initiation not in (_STATIC, _DYNAMIC):
        raise MalformedPayload(f"payload: field 01 is {initiation!r}, expected '11' or '12'")
    merchant = _fields(_require(top, "38", "payload"), "field 38")
    _expect(merchant, "00", NAPAS_GUID, "field 38")
    service = _require(merchant, "02", "field 38")
    if service == SERVICE_CARD:
        raise MalformedPayload("field 38: service QRIBFTTC (transfer to a card) is not supported")
    _expect(merchant, "02", SERVICE_ACCOUNT, "field 38")
    beneficiary = _fields(_require(merchant, "01", "field 38"), "field 38/01")
    bin_ = _require(beneficiary, "00", "field 38/01")
    account = _require(beneficiary, "01", "field 38/01")
    if not _BIN.fullmatch(bin_):
        raise MalformedPayload(f"field 38/01/00: BIN {bin_!r} is not 6 digits")
    if not _ACCOUNT.fullmatch(account):
        raise MalformedPayload(
            f"field 38/01/01: account must be 1–{ACCOUNT_MAX_LENGTH} letters or digits"
        )
    _expect(top, "53", CURRENCY_VND, "payload")
    _expect(top, "58", COUNTRY, "payload")
    amount: int | None = None
    if "54" in top:
        if not _AMOUNT.fullmatch(top["54"]):
            raise MalformedPayload(f"field 54: amount {top['54']!r} is not a whole VND amount")
        amount = int(top["54"])
    if initiation == _DYNAMIC and amount is None:
        raise MalformedPayload("a dynamic QR (01=12) without an amount (54)")
    if initiation == _STATIC and amount is not None:
        raise MalformedPayload("a static QR (01=11) with an amount (54)")
    purpose: str | None = None
    if "62" in top:
        additional = _fields(top["62"], "field 62")
        if "08" in additional:
            purpose = additional["08"]
            if not _PURPOSE.fullmatch(purpose):
                raise MalformedPayload(
                    f"field 62/08: purpose must be 1–{PURPOSE_MAX_LENGTH} printable characters"
                )
    return VietQR(bin=bin_, account=account, amount=amount, purpose=purpose)


def qr_png(payload: str, *, scale: int = 6, border: int = 4) -> bytes:
    """The QR code image of ``payload`` as PNG bytes (error correction M, as banking apps scan).

    ``segno`` picks the smallest version that holds the payload; byte mode, since a payload
    mixes digits, upper- and lower-case letters and spaces.
    """
    code = segno.make_qr(payload, error="m", boost_error=False)
    out = io.BytesIO()
    code.save(out, kind="png", scale=scale, border=border)
    return out.getvalue()
