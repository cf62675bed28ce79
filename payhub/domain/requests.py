"""Portal request bodies, parsed and validated into frozen values (CONTRACT §3).

The web layer hands over the decoded JSON; everything after this module works on
``PaymentRequest`` / ``RefundRequestBody`` and never sees raw input again. The checks are
hand-written rather than a JSON Schema library because this runs once per payment on the
hot path, and because the contract wants *every* field error in one answer, with JSON paths
(``items[0].amount``, ``dossier.code``) the portal can point at.

Limits. The first seven rows are the contract's (the ASCII, credential and length rules on
``return_url`` are ours); the rest are ours. The OpenAPI document is built from these same
constants, so the two cannot drift:

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

Every string is NFC-normalised (Vietnamese arrives both precomposed and decomposed, and
the two must compare, hash and store the same) and stripped; a string that is empty after
stripping counts as missing, and ``null`` for an optional field counts as absent. Lengths
are counted in code points after normalisation. Control, format and surrogate characters
are rejected: they end up in bank memos, logs and UTF-8 columns. Types are strict: a JSON
``true`` is not an integer and ``1.0`` or ``"100"`` is not an amount. Unknown fields are
rejected at every level, so a typo in an optional field name is an error, not a silent
default.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypedDict
from urllib.parse import urlsplit

from payhub.domain.money import CURRENCY, MAX_PAYMENT, MIN_PAYMENT
from payhub.errors import FieldError, ProblemError

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
    "MAX_REPORTED_ERRORS",
    "MIN_EXPIRES_IN",
    "MIN_ITEMS",
    "NAME_MAX_LENGTH",
    "PAYER_FIELDS",
    "PAYER_REQUIRED",
    "PAYMENT_FIELDS",
    "PAYMENT_REQUIRED",
    "PHONE_PATTERN",
    "REFUND_FIELDS",
    "REFUND_REQUIRED",
    "RETURN_URL_MAX_LENGTH",
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
    "parse_payment_request",
    "parse_refund_request",
]

DOSSIER_CODE_MAX_LENGTH: Final = 64
# "." and ".." are excluded: URL normalisation removes them from /v1/dossiers/{code}.
DOSSIER_CODE_PATTERN: Final = rf"^(?!\.\.?$)[A-Za-z0-9._-]{{1,{DOSSIER_CODE_MAX_LENGTH}}}$"
CODE_MAX_LENGTH: Final = 64
NAME_MAX_LENGTH: Final = 255
DESCRIPTION_MAX_LENGTH: Final = 255
RETURN_URL_MAX_LENGTH: Final = 2048
MIN_ITEMS: Final = 1
MAX_ITEMS: Final = 50
MIN_EXPIRES_IN: Final = 300
MAX_EXPIRES_IN: Final = 86_400
DEFAULT_EXPIRES_IN: Final = 900
ID_NUMBER_PATTERN: Final = r"^(?:[0-9]{9}|[0-9]{12})$"
# What is accepted on input (separators allowed); the stored form is always 0 + 9 or 10 digits.
PHONE_PATTERN: Final = r"^(?:\+84|0084|84|0)[0-9 .()-]{9,16}$"
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


# --------------------------------------------------------------------------- parsing

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Cc control, Cf format (bidi overrides, zero-width), Cs lone surrogates (not UTF-8), Co private.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_DOSSIER_CODE = re.compile(DOSSIER_CODE_PATTERN)
_ID_NUMBER = re.compile(ID_NUMBER_PATTERN)
_PHONE_SEPARATORS = re.compile(r"[ .()\-]")
_MOBILE = re.compile(r"[35789][0-9]{8}")
_LANDLINE = re.compile(r"2[0-9]{9}")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ITEM_KINDS: Final = {kind.value: kind for kind in ItemKind}
_KIND_LIST: Final = ", ".join(_ITEM_KINDS)

_MISSING: Final = object()


def _child(prefix: str, key: object) -> str:
    """The JSON path of ``key`` under ``prefix``; odd keys are quoted so paths stay readable."""
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    quoted = json.dumps(str(key), ensure_ascii=True)
    return f"{prefix}[{quoted}]"


class _Fields:
    """Collects field errors across the whole body so the portal gets them all at once."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def obj(
        self, value: object, path: str, allowed: Collection[str]
    ) -> Mapping[str, object] | None:
        if not isinstance(value, dict):
            self.add(path, "must be an object")
            return None
        for key in value:
            if key not in allowed:
                self.add(_child(path, key), "unknown field")
        return value

    def text(
        self,
        data: Mapping[str, object],
        key: str,
        path: str,
        *,
        max_length: int,
        required: bool,
    ) -> str | None:
        """A normalised string, or None when absent (an error too if it is required)."""
        field = _child(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.add(field, "is required")
            return None
        if type(value) is not str:
            self.add(field, "must be a string")
            return None
        if value.isascii():
            value = value.strip()
            if _ASCII_CONTROL.search(value):
                self.add(field, "must not contain control or format characters")
                return None
        else:
            value = unicodedata.normalize("NFC", value).strip()
            for char in value:
                if char < "\x7f" and char >= "\x20":
                    continue
                if char < "\x80" or unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
                    self.add(field, "must not contain control or format characters")
                    return None
        if not value:
            if required:
                self.add(field, "is required")
            return None
        if len(value) > max_length:
            self.add(field, f"must be at most {max_length} characters")
            return None
        return value

    def integer(
        self,
        data: Mapping[str, object],
        key: str,
        path: str,
        *,
        minimum: int,
        maximum: int,
        required: bool,
    ) -> int | None:
        field = _child(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.add(field, "is required")
            return None
        if type(value) is not int:
            self.add(field, "must be an integer")
            return None
        if value < minimum:
            self.add(field, f"must be at least {minimum}")
            return None
        if value > maximum:
            self.add(field, f"must be at most {maximum}")
            return None
        return value

    def raise_if_any(self) -> None:
        if not self.errors:
            return
        total = len(self.errors)
        first = self.errors[0]
        if total == 1:
            detail = f"{first.field}: {first.message}"
        else:
            detail = f"{total} fields are invalid; the first: {first.field}: {first.message}"
        raise ProblemError("validation_failed", detail, errors=self.errors[:MAX_REPORTED_ERRORS])


def _require_object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise ProblemError("malformed_request", "the request body must be a JSON object")
    return body


def _normalise_phone(raw: str) -> str | None:
    """``0`` + the national number, from the ways Vietnamese numbers are commonly written.

    Accepts ``0…``, ``+84…``, ``0084…`` and ``84…`` with spaces, dots, dashes or brackets;
    the national number is a mobile (9 digits starting 3, 5, 7, 8, 9) or a landline
    (10 digits starting 2, the area-code plan since 2017).
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


def _return_url_problem(url: str) -> str | None:
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
    return None


def _parse_item(fields: _Fields, value: object, path: str) -> Item | None:
    data = fields.obj(value, path, ITEM_FIELDS)
    if data is None:
        return None
    before = len(fields.errors)
    kind_text = fields.text(data, "kind", path, max_length=CODE_MAX_LENGTH, required=True)
    kind = None
    if kind_text is not None:
        kind = _ITEM_KINDS.get(kind_text)
        if kind is None:
            fields.add(f"{path}.kind", f"must be one of {_KIND_LIST}")
    code = fields.text(data, "code", path, max_length=CODE_MAX_LENGTH, required=True)
    description = fields.text(
        data, "description", path, max_length=DESCRIPTION_MAX_LENGTH, required=True
    )
    amount = fields.integer(
        data, "amount", path, minimum=MIN_PAYMENT, maximum=MAX_PAYMENT, required=True
    )
    if len(fields.errors) != before:
        return None
    assert kind is not None and code is not None and description is not None
    assert amount is not None
    return Item(kind, code, description, amount)


def _parse_items(fields: _Fields, value: object) -> tuple[Item, ...] | None:
    if value is None:
        fields.add("items", "is required")
        return None
    if not isinstance(value, list):
        fields.add("items", "must be an array")
        return None
    if len(value) < MIN_ITEMS:
        fields.add("items", f"must contain at least {MIN_ITEMS} item")
        return None
    if len(value) > MAX_ITEMS:
        # Not looking inside: the portal has to split the bill anyway.
        fields.add("items", f"must contain at most {MAX_ITEMS} items")
        return None
    items = [_parse_item(fields, entry, f"items[{index}]") for index, entry in enumerate(value)]
    parsed = [item for item in items if item is not None]
    return tuple(parsed) if len(parsed) == len(items) else None


def parse_payment_request(body: object, *, known_banks: Collection[str]) -> PaymentRequest:
    """Validate a ``POST /v1/payments`` body (already JSON-decoded).

    Raises ``ProblemError("malformed_request")`` when the body is not a JSON object and
    ``ProblemError("validation_failed", errors=[...])`` with every field error otherwise.
    ``known_banks`` are the configured bank codes a portal may ask for by name.
    """
    data = _require_object(body)
    fields = _Fields()
    fields.obj(data, "", PAYMENT_FIELDS)

    dossier = None
    raw_dossier = data.get("dossier")
    if raw_dossier is None:
        fields.add("dossier", "is required")
    else:
        dossier_data = fields.obj(raw_dossier, "dossier", DOSSIER_FIELDS)
        if dossier_data is not None:
            before = len(fields.errors)
            code = fields.text(
                dossier_data, "code", "dossier", max_length=DOSSIER_CODE_MAX_LENGTH, required=True
            )
            if code is not None and not _DOSSIER_CODE.fullmatch(code):
                fields.add(
                    "dossier.code",
                    "must contain only A-Z, a-z, 0-9, '.', '_' and '-', and not be '.' or '..'",
                )
            procedure_code = fields.text(
                dossier_data,
                "procedure_code",
                "dossier",
                max_length=CODE_MAX_LENGTH,
                required=False,
            )
            agency_code = fields.text(
                dossier_data, "agency_code", "dossier", max_length=CODE_MAX_LENGTH, required=True
            )
            agency_name = fields.text(
                dossier_data, "agency_name", "dossier", max_length=NAME_MAX_LENGTH, required=False
            )
            if len(fields.errors) == before:
                assert code is not None and agency_code is not None
                dossier = DossierRef(code, agency_code, procedure_code, agency_name)

    payer = None
    raw_payer = data.get("payer")
    if raw_payer is None:
        fields.add("payer", "is required")
    else:
        payer_data = fields.obj(raw_payer, "payer", PAYER_FIELDS)
        if payer_data is not None:
            before = len(fields.errors)
            name = fields.text(
                payer_data, "name", "payer", max_length=NAME_MAX_LENGTH, required=True
            )
            id_number = fields.text(
                payer_data, "id_number", "payer", max_length=CODE_MAX_LENGTH, required=False
            )
            if id_number is not None and not _ID_NUMBER.fullmatch(id_number):
                fields.add("payer.id_number", "must be 9 (CMND) or 12 (CCCD) digits")
            phone = fields.text(
                payer_data, "phone", "payer", max_length=CODE_MAX_LENGTH, required=False
            )
            if phone is not None:
                phone = _normalise_phone(phone)
                if phone is None:
                    fields.add("payer.phone", "must be a Vietnamese phone number, e.g. 0912345678")
            if len(fields.errors) == before:
                assert name is not None
                payer = Payer(name, id_number, phone)

    items = _parse_items(fields, data.get("items"))
    amount = fields.integer(
        data, "amount", "", minimum=MIN_PAYMENT, maximum=MAX_PAYMENT, required=True
    )
    if items is not None and amount is not None:
        total = sum(item.amount for item in items)
        if total != amount:
            fields.add("amount", f"must equal the sum of the item amounts ({total})")

    currency = fields.text(data, "currency", "", max_length=CODE_MAX_LENGTH, required=True)
    if currency is not None and currency != CURRENCY:
        fields.add("currency", f"must be {CURRENCY!r}")

    bank = fields.text(data, "bank", "", max_length=CODE_MAX_LENGTH, required=False)
    if bank is not None and bank not in known_banks:
        banks = ", ".join(sorted(known_banks)) or "none configured"
        fields.add("bank", f"unknown bank (configured: {banks})")

    return_url = fields.text(
        data, "return_url", "", max_length=RETURN_URL_MAX_LENGTH, required=True
    )
    if return_url is not None:
        problem = _return_url_problem(return_url)
        if problem is not None:
            fields.add("return_url", problem)

    expires_in = fields.integer(
        data, "expires_in", "", minimum=MIN_EXPIRES_IN, maximum=MAX_EXPIRES_IN, required=False
    )
    description = fields.text(
        data, "description", "", max_length=DESCRIPTION_MAX_LENGTH, required=False
    )

    fields.raise_if_any()
    assert dossier is not None and payer is not None and items is not None
    assert amount is not None and currency is not None and return_url is not None
    return PaymentRequest(
        dossier=dossier,
        payer=payer,
        items=items,
        amount=amount,
        return_url=return_url,
        currency=currency,
        bank=bank,
        expires_in=DEFAULT_EXPIRES_IN if expires_in is None else expires_in,
        description=description,
    )


def parse_refund_request(body: object) -> RefundRequestBody:
    """Validate a refund body: ``amount`` required, ``reason`` optional (default ``""``).

    Whether the amount fits what is left to refund is the refund use case's business; here
    it only has to be a plausible VND amount.
    """
    data = _require_object(body)
    fields = _Fields()
    fields.obj(data, "", REFUND_FIELDS)
    amount = fields.integer(
        data, "amount", "", minimum=MIN_PAYMENT, maximum=MAX_PAYMENT, required=True
    )
    reason = fields.text(data, "reason", "", max_length=DESCRIPTION_MAX_LENGTH, required=False)
    fields.raise_if_any()
    assert amount is not None
    return RefundRequestBody(amount=amount, reason=reason or "")
