"""Portal request bodies as frozen domain values, and the rules they obey (CONTRACT §3).

Everything after the web layer works on ``PaymentRequest`` / ``RefundRequestBody`` and
never sees raw input again. The wire form of these bodies (types, required fields, every
field error with its JSON path) is declared once in ``payhub.api.schemas``, which builds
these values and from which the served OpenAPI document is generated; this module keeps
what the domain itself needs and knows: the limits, the value types, the canonical form
and fingerprint, and the rules a JSON Schema cannot say (phone normalisation, the return
URL policy, the dossier-code grammar). It imports no web or schema library.

Limits. The first seven rows are the contract's (the ASCII, credential and length rules on
``return_url`` are ours); the rest are ours:

=========================================  ==============================================
``dossier.code``                           1–64 of ``[A-Za-z0-9._-]``, not ``.`` or ``..``
                                           (it is a URL path segment)
``items``                                  1–50; ``kind`` ∈ ``ItemKind``; ``amount`` ≥ 1
``amount``                                 = sum of items, 1 … 100,000,000,000 VND
``currency``                               ``"VND"``
``bank``                                   optional; one of the configured banks
``return_url``                             required; https, or http to localhost,
                                           127.0.0.1, [::1]; ASCII, no credentials,
                                           ≤ 2,048 chars
``expires_in``                             300–86,400 s, default 900
``dossier.agency_code``, ``procedure_code``,
``items[].code``                           ≤ 64 chars (``procedure_code`` optional)
``payer.name``, ``dossier.agency_name``    ≤ 255 chars (``agency_name`` optional)
``items[].description``, ``description``   ≤ 255 chars (``description`` optional)
``payer.id_number``                        optional; 9 (CMND) or 12 (CCCD) digits
``payer.phone``                            optional; Vietnamese number, stored as ``0…``
``refund.amount`` / ``refund.reason``      1 … 100,000,000,000 / optional, ≤ 255 chars
=========================================  ==============================================
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypedDict
from urllib.parse import urlsplit

from payhub.domain.money import CURRENCY, MAX_PAYMENT, MIN_PAYMENT

__all__ = [
    "CODE_MAX_LENGTH",
    "DEFAULT_EXPIRES_IN",
    "DESCRIPTION_MAX_LENGTH",
    "DOSSIER_CODE_MAX_LENGTH",
    "DOSSIER_CODE_PATTERN",
    "DOSSIER_FIELDS",
    "DOSSIER_REQUIRED",
    "ID_NUMBER_PATTERN",
    "ITEM_FIELDS",
    "ITEM_REQUIRED",
    "LOCAL_HOSTS",
    "MAX_EXPIRES_IN",
    "MAX_ITEMS",
    "MAX_PAYMENT",
    "MAX_REPORTED_ERRORS",
    "MIN_EXPIRES_IN",
    "MIN_ITEMS",
    "MIN_PAYMENT",
    "NAME_MAX_LENGTH",
    "PAYER_FIELDS",
    "PAYER_REQUIRED",
    "PAYMENT_FIELDS",
    "PAYMENT_REQUIRED",
    "PHONE_PATTERN",
    "REFUND_FIELDS",
    "REFUND_REQUIRED",
    "RETURN_URL_MAX_LENGTH",
    "RETURN_URL_PATTERN",
    "WHITESPACE",
    "DossierFields",
    "DossierRef",
    "Item",
    "ItemFields",
    "ItemKind",
    "Payer",
    "PayerFields",
    "PaymentRequest",
    "PaymentRequestFields",
    "RefundFields",
    "RefundRequestBody",
    "fingerprint_of",
    "is_dossier_code",
    "normalise_phone",
    "return_url_problem",
]

DOSSIER_CODE_MAX_LENGTH: Final = 64
CODE_MAX_LENGTH: Final = 64
NAME_MAX_LENGTH: Final = 255
DESCRIPTION_MAX_LENGTH: Final = 255
RETURN_URL_MAX_LENGTH: Final = 2048
MIN_ITEMS: Final = 1
MAX_ITEMS: Final = 50
MIN_EXPIRES_IN: Final = 300
MAX_EXPIRES_IN: Final = 86_400
DEFAULT_EXPIRES_IN: Final = 900

# The grammars below are written for the value *as sent*: surrounding whitespace is
# stripped before use, so it is allowed around them, and an optional field may be blank
# (it then counts as absent). The same text is the OpenAPI ``pattern`` and what the hub
# matches (``fullmatch``), so document and behaviour cannot disagree. Python ``re`` and
# ECMA-262 read them alike.
#
# Whitespace is what ``str.strip`` removes, spelled out: ``\s`` differs between Python,
# ECMA-262 and Rust (U+001C-U+001F, U+FEFF), and validators of all three read the document.
WHITESPACE: Final = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
    r"\u205f\u3000"
)
_WS = f"[{WHITESPACE}]*"
# "." and ".." are excluded: URL normalisation removes them from /v1/dossiers/{code}.
DOSSIER_CODE_PATTERN: Final = (
    rf"^{_WS}(?!\.\.?{_WS}$)[A-Za-z0-9._-]{{1,{DOSSIER_CODE_MAX_LENGTH}}}{_WS}$"
)
ID_NUMBER_PATTERN: Final = rf"^{_WS}(?:[0-9]{{9}}|[0-9]{{12}})?{_WS}$"
# Separators may stand anywhere; stored as 0 + the 9-digit mobile or 10-digit landline.
_SEP = r"[ .()\-]*"
PHONE_PATTERN: Final = (
    rf"^{_WS}(?:{_SEP}(?:\+{_SEP}8{_SEP}4|0{_SEP}0{_SEP}8{_SEP}4|8{_SEP}4|0){_SEP}"
    rf"(?:[35789]{_SEP}(?:[0-9]{_SEP}){{8}}|2{_SEP}(?:[0-9]{_SEP}){{9}}))?{_WS}$"
)
# https to a host name or IPv4 address (no credentials, no IPv6 literal), or http to this
# machine; an optional port 0-65535; then visible ASCII. Schemes are case-insensitive.
_PORT = (
    r"(?::(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5])?)?"
)
RETURN_URL_PATTERN: Final = (
    f"^{_WS}"
    r"(?:[Hh][Tt][Tt][Pp][Ss]://[A-Za-z0-9._~!$&'()*+,;=%-]+"
    r"|[Hh][Tt][Tt][Pp]://(?:[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]|127\.0\.0\.1|\[::1\]))"
    + _PORT
    + rf"(?:[/?#][!-~]*)?{_WS}$"
)
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
# A 64 KiB body can name thousands of bad fields; the answer stays small.
MAX_REPORTED_ERRORS: Final = 100

# Field names per object, in the order the payment object shows them, and which are required.
DOSSIER_FIELDS: Final = ("code", "procedure_code", "agency_code", "agency_name")
DOSSIER_REQUIRED: Final = ("code", "agency_code")
PAYER_FIELDS: Final = ("name", "id_number", "phone")
PAYER_REQUIRED: Final = ("name",)
ITEM_FIELDS: Final = ("kind", "code", "description", "amount")
ITEM_REQUIRED: Final = ITEM_FIELDS
PAYMENT_FIELDS: Final = (
    "dossier",
    "payer",
    "items",
    "amount",
    "currency",
    "bank",
    "return_url",
    "expires_in",
    "description",
)
PAYMENT_REQUIRED: Final = ("dossier", "payer", "items", "amount", "currency", "return_url")
REFUND_FIELDS: Final = ("amount", "reason")
REFUND_REQUIRED: Final = ("amount",)


class ItemKind(StrEnum):
    """What a line of the bill is, as public-service portals classify fees (CONTRACT §3)."""

    FEE = "fee"
    CHARGE = "charge"
    TAX = "tax"
    SOCIAL_INSURANCE = "social_insurance"
    FINE = "fine"


class DossierFields(TypedDict):
    code: str
    procedure_code: str | None
    agency_code: str
    agency_name: str | None


class PayerFields(TypedDict):
    name: str
    id_number: str | None
    phone: str | None


class ItemFields(TypedDict):
    kind: str
    code: str
    description: str
    amount: int


class PaymentRequestFields(TypedDict):
    """The canonical form's shape, so callers index it with the type checker's help."""

    dossier: DossierFields
    payer: PayerFields
    items: list[ItemFields]
    amount: int
    currency: str
    bank: str | None
    return_url: str
    expires_in: int
    description: str | None


class RefundFields(TypedDict):
    amount: int
    reason: str


def fingerprint_of(canonical: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a canonical request: key order and NFD/NFC do not change it."""
    text = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DossierRef:
    """The dossier (hồ sơ) a payment settles, as the portal names it."""

    code: str
    agency_code: str
    procedure_code: str | None = None
    agency_name: str | None = None

    def to_dict(self) -> DossierFields:
        return {
            "code": self.code,
            "procedure_code": self.procedure_code,
            "agency_code": self.agency_code,
            "agency_name": self.agency_name,
        }


@dataclass(frozen=True, slots=True)
class Payer:
    """Who pays; ``id_number`` and ``phone`` are stored but never returned to a portal."""

    name: str
    id_number: str | None = None
    phone: str | None = None

    def to_dict(self) -> PayerFields:
        return {"name": self.name, "id_number": self.id_number, "phone": self.phone}


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the bill; item codes are what overpayment detection compares."""

    kind: ItemKind
    code: str
    description: str
    amount: int

    def to_dict(self) -> ItemFields:
        return {
            "kind": self.kind.value,
            "code": self.code,
            "description": self.description,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A validated ``POST /v1/payments`` body; every string already normalised."""

    dossier: DossierRef
    payer: Payer
    items: tuple[Item, ...]
    amount: int
    return_url: str
    currency: str = CURRENCY
    bank: str | None = None
    expires_in: int = DEFAULT_EXPIRES_IN
    description: str | None = None

    def canonical(self) -> PaymentRequestFields:
        """The normalised request as plain JSON values, defaults filled in.

        Two bodies that mean the same (key order, whitespace, NFD vs NFC, an omitted
        ``expires_in`` vs 900) have the same canonical form, so the idempotency fingerprint
        is taken over this and it is what gets stored. It contains the payer's id number
        and phone: never send it to a portal as it is.
        """
        return {
            "dossier": self.dossier.to_dict(),
            "payer": self.payer.to_dict(),
            "items": [item.to_dict() for item in self.items],
            "amount": self.amount,
            "currency": self.currency,
            "bank": self.bank,
            "return_url": self.return_url,
            "expires_in": self.expires_in,
            "description": self.description,
        }

    def fingerprint(self) -> str:
        """What makes two requests under one ``Idempotency-Key`` "the same request"."""
        return fingerprint_of(self.canonical())


@dataclass(frozen=True, slots=True)
class RefundRequestBody:
    """A validated ``POST /v1/payments/{id}/refunds`` body."""

    amount: int
    reason: str = ""

    def canonical(self) -> RefundFields:
        return {"amount": self.amount, "reason": self.reason}

    def fingerprint(self) -> str:
        """What makes two refunds under one ``Idempotency-Key`` "the same request"."""
        return fingerprint_of(self.canonical())


# --------------------------------------------------------------------------- rules

_DOSSIER_CODE = re.compile(DOSSIER_CODE_PATTERN)
_PHONE_SEPARATORS = re.compile(r"[ .()\-]")
_MOBILE = re.compile(r"[35789][0-9]{8}")
_LANDLINE = re.compile(r"2[0-9]{9}")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_RETURN_URL = re.compile(RETURN_URL_PATTERN)


def is_dossier_code(code: str) -> bool:
    """Whether ``code`` (already stripped) is a dossier code, in a body, a query or a path.

    One grammar for create, ``GET /v1/payments?dossier=`` and ``/v1/dossiers/{code}``, so a
    code that create refuses can never be looked up either. ``fullmatch``, not ``$``: a
    trailing newline must not pass.
    """
    return _DOSSIER_CODE.fullmatch(code) is not None


def normalise_phone(raw: str) -> str | None:
    """``0`` + the national number, from the ways Vietnamese numbers are commonly written.

    Accepts ``0…``, ``+84…``, ``0084…`` and ``84…`` with spaces, dots, dashes or brackets;
    the national number is a mobile (9 digits starting 3, 5, 7, 8, 9) or a landline
    (10 digits starting 2, the area-code plan since 2017). None when it is neither.
    """
    digits = _PHONE_SEPARATORS.sub("", raw)
    if digits.startswith("+84"):
        national = digits[3:]
    elif digits.startswith("0084"):
        national = digits[4:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        national = digits[2:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        return None
    if _MOBILE.fullmatch(national) or _LANDLINE.fullmatch(national):
        return "0" + national
    return None


def return_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a return URL, or None; https only, except to this machine."""
    if not url.isascii() or _URL_FORBIDDEN.search(url):
        return "must be an ASCII URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        return "must use https (http only for localhost, 127.0.0.1 or [::1])"
    if _RETURN_URL.fullmatch(url) is None:
        # What urlsplit lets through but the documented grammar does not (an IPv6 literal,
        # odd host characters): refused, so the document's pattern is the whole rule.
        return "must be an absolute https URL (host name or IPv4 address, optional port)"
    return None
