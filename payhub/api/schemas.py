"""The portal request bodies and query strings, declared once (CONTRACT §3–4).

Each model below is the whole wire description of one body or query: it validates what
arrives (strict types, unknown fields refused, every error with its JSON path) and the
served ``/v1/openapi.json`` is generated from it (``payhub.api.openapi``). What a JSON
Schema cannot say is a validator on the model: NFC normalisation and stripping, the
dossier-code grammar, ``amount`` = sum of the items, the configured banks. The domain
values they produce (``payhub.domain.requests``) know nothing of this library.

Why pydantic v2 and not msgspec, measured on the CONTRACT §3 create body (best of five
runs of 20,000, this 2-core machine, Python 3.11, pydantic 2.14.4, msgspec 0.22.0), both
libraries given the same declarative constraints:

====================================================  ==========  ==========
                                                      msgspec     pydantic
====================================================  ==========  ==========
valid body, from bytes (``decode`` / ``validate_json``)    3.0 µs      6.5 µs
valid body, ``json.loads`` then validate                   8.2 µs     11.4 µs
invalid body, 7 bad fields + 1 unknown: time               1.6 µs      7.0 µs
invalid body: errors reported                              1           8, each
                                                                       with its path
====================================================  ==========  ==========

msgspec stops at the first error; the contract wants every field error in one answer, so
it would need a second, hand-written pass over the body: the duplicate this module
removes. Pydantic reports all of them with their location, generates JSON Schema, and
its few microseconds are small beside a create's CPU (about 2,450 µs, issue 5). The
previous hand-written parser took 37 µs per valid body; this module takes about 30 µs
(``json.loads``, the model, the normalising validators and the domain values).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Callable, Collection, Mapping
from functools import cache
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from payhub.domain import requests as domain
from payhub.domain.money import CURRENCY, MAX_PAYMENT, MIN_PAYMENT
from payhub.domain.requests import ItemKind
from payhub.errors import FieldError, ProblemError

__all__ = [
    "EVENT_ID_PATTERN",
    "EXAMPLE_PAYMENT_REQUEST",
    "MAX_EVENTS_PAGE",
    "DossierInput",
    "EventsQuery",
    "Item",
    "PayerInput",
    "PaymentListQuery",
    "PaymentRequest",
    "RefundRequest",
    "Text",
    "dossier_code",
    "forbidden_characters",
    "parse_events_query",
    "parse_payment_list_query",
    "parse_payment_request",
    "parse_refund_request",
]

MAX_EVENTS_PAGE: Final = 500
DEFAULT_EVENTS_PAGE: Final = 100
EVENT_ID_PATTERN: Final = r"^evt_[0-9a-z]{26}$"
# Cc control, Cf format (bidi overrides, zero-width), Cs lone surrogates (not UTF-8): they
# end up in bank memos, logs and UTF-8 columns. Private use (Co) is valid UTF-8 and passes:
# the 137,000 code points of its planes made the documented pattern too heavy for a
# generator (hypothesis took 3.5 s to build one strategy from it) for no safety gained.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs"})
_ASCII_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EVENT_ID: Final = re.compile(EVENT_ID_PATTERN)
_KIND_LIST: Final = ", ".join(kind.value for kind in ItemKind)
_CONTROL_MESSAGE: Final = "must not contain control or format characters"


def _refuse(message: str) -> PydanticCustomError:
    """A field error whose message is ours, word for word (see ``_message``)."""
    return PydanticCustomError("payhub", "{reason}", {"reason": message})


# --------------------------------------------------------------------------- text


@cache
def forbidden_characters() -> str:
    """The refused code points as the inside of a regex character class.

    Derived from the running Python's Unicode database, the same one the validator asks,
    so the documented pattern and the check agree by construction. BMP code points are
    written ``\\uXXXX`` (read alike by Python ``re``, ECMA-262 and Rust's regex, which
    schemathesis' validator uses); astral ones as themselves, since ``\\U…`` is
    Python-only. Lone surrogates (Cs) are left out: a regex over Unicode text cannot name
    them, and only a JSON text that is not valid Unicode can carry one; the hub refuses
    them all the same. Computed once, when the document is built.
    """
    parts: list[str] = []
    start: int | None = None
    for point in range(sys.maxunicode + 2):
        bad = point <= sys.maxunicode and unicodedata.category(chr(point)) in (
            _FORBIDDEN_CATEGORIES - {"Cs"}
        )
        if bad and start is None:
            start = point
        elif not bad and start is not None:
            low, high = _class_char(start), _class_char(point - 1)
            parts.append(low if start == point - 1 else f"{low}-{high}")
            start = None
    return "".join(parts)


def _class_char(point: int) -> str:
    return f"\\u{point:04x}" if point <= 0xFFFF else chr(point)


def _text_pattern(required: bool) -> str:
    """What a text field accepts as sent: whitespace around, nothing forbidden inside."""
    bad, space = forbidden_characters(), domain.WHITESPACE
    inner = f"[^{bad}{space}](?:[^{bad}]*[^{bad}{space}])?"
    around = f"[{space}]*"
    return f"^{around}{inner}{around}$" if required else f"^{around}(?:{inner})?{around}$"


def _has_forbidden(value: str) -> bool:
    if value.isascii():
        return _ASCII_CONTROL.search(value) is not None
    for char in value:
        if "\x20" <= char < "\x7f":
            continue
        if char < "\x80" or unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return True
    return False


class Text:
    """A string field: NFC-normalised, stripped, no control or format character, bounded.

    Vietnamese arrives both precomposed and decomposed, and the two must compare, hash and
    store the same, hence NFC. The length is counted in code points after NFC and before
    stripping, so the documented ``maxLength`` holds for what is sent (in NFC). A string
    that is blank after stripping counts as missing (``is required``, or absent when the
    field is optional) unless ``blank`` says it is refused like any other bad value.
    ``grammar`` (a pattern from ``payhub.domain.requests``, written for the value as sent)
    is matched on the text as sent; ``grammar_message`` says why it failed, and may be a
    function of the stripped text for a more precise word.
    """

    __slots__ = (
        "blank_absent",
        "choices",
        "grammar",
        "grammar_message",
        "max_length",
        "required",
    )

    def __init__(
        self,
        max_length: int,
        *,
        required: bool = True,
        blank_absent: bool = True,
        grammar: str | None = None,
        grammar_message: str | Callable[[str], str] = "",
        choices: tuple[str, ...] = (),
    ) -> None:
        self.max_length = max_length
        self.required = required
        self.blank_absent = blank_absent
        self.choices = choices
        if choices:
            around = f"[{domain.WHITESPACE}]*"
            grammar = f"^{around}(?:{'|'.join(map(re.escape, choices))}){around}$"
        self.grammar = re.compile(grammar) if grammar is not None else None
        self.grammar_message = grammar_message

    def clean(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        value = raw if raw.isascii() else unicodedata.normalize("NFC", raw)
        stripped = value.strip()
        if _has_forbidden(stripped):
            raise _refuse(_CONTROL_MESSAGE)
        if not stripped and self.blank_absent:
            if self.required:
                raise _refuse("is required")
            return None
        if len(value) > self.max_length:
            raise _refuse(f"must be at most {self.max_length} characters")
        if self.grammar is not None and self.grammar.fullmatch(raw) is None:
            message = self.grammar_message
            raise _refuse(message(stripped) if callable(message) else message)
        return stripped

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.clean, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        document: dict[str, Any] = {"type": "string" if self.required else ["string", "null"]}
        if len(self.choices) == 1:
            return {**document, "const": self.choices[0]}
        if self.choices:
            return {**document, "enum": list(self.choices)}
        if self.required or not self.blank_absent:
            document["minLength"] = 1
        document["maxLength"] = self.max_length
        if self.grammar is not None:
            document["pattern"] = self.grammar.pattern
        else:
            document["pattern"] = _text_pattern(self.required or not self.blank_absent)
        return document


_TEXT_NOTE: Final = (
    " Stored NFC-normalised and stripped of surrounding whitespace; control and format "
    "characters (Unicode Cc, Cf, Cs) are refused inside; the length is counted in "
    "code points after NFC, surrounding whitespace included."
)
_OPTIONAL_NOTE: Final = " Absent, `null` and a blank string all mean none."

Amount = Annotated[int, Field(ge=MIN_PAYMENT, le=MAX_PAYMENT)]


class _Body(BaseModel):
    """A closed request object: exact JSON types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------- bodies


class DossierInput(_Body):
    """The dossier (hồ sơ) the payment settles."""

    code: Annotated[
        str,
        Text(
            domain.DOSSIER_CODE_MAX_LENGTH,
            grammar=domain.DOSSIER_CODE_PATTERN,
            grammar_message="must contain only A-Z, a-z, 0-9, '.', '_' and '-', "
            "and not be '.' or '..'",
        ),
        Field(
            description="The portal's dossier code, 1–64 of `[A-Za-z0-9._-]`, not `.` or "
            "`..`; it appears in URL paths (`/v1/dossiers/{code}`, `?dossier=`), which "
            "take the same grammar. Surrounding whitespace is stripped."
        ),
    ]
    procedure_code: Annotated[
        str | None,
        Text(domain.CODE_MAX_LENGTH, required=False),
        Field(description="Administrative procedure code." + _OPTIONAL_NOTE),
    ] = None
    agency_code: Annotated[
        str,
        Text(domain.CODE_MAX_LENGTH),
        Field(description="The receiving agency's code."),
    ]
    agency_name: Annotated[
        str | None,
        Text(domain.NAME_MAX_LENGTH, required=False),
        Field(description="The agency's name." + _TEXT_NOTE + _OPTIONAL_NOTE),
    ] = None

    def to_domain(self) -> domain.DossierRef:
        return domain.DossierRef(self.code, self.agency_code, self.procedure_code, self.agency_name)


class PayerInput(_Body):
    """Who pays. `id_number` and `phone` are kept for the receipt, never returned."""

    name: Annotated[
        str,
        Text(domain.NAME_MAX_LENGTH),
        Field(description="The payer's full name." + _TEXT_NOTE),
    ]
    id_number: Annotated[
        str | None,
        Text(
            domain.CODE_MAX_LENGTH,
            required=False,
            grammar=domain.ID_NUMBER_PATTERN,
            grammar_message="must be 9 (CMND) or 12 (CCCD) digits",
        ),
        Field(description="CMND (9 digits) or CCCD (12 digits). Never returned." + _OPTIONAL_NOTE),
    ] = None
    phone: Annotated[
        str | None,
        Text(
            domain.CODE_MAX_LENGTH,
            required=False,
            grammar=domain.PHONE_PATTERN,
            grammar_message="must be a Vietnamese phone number, e.g. 0912345678",
        ),
        Field(
            description="A Vietnamese number (`0…`, `+84…`, `0084…`, `84…`; spaces, dots, "
            "dashes and brackets allowed anywhere): a mobile of 9 digits after the 0 "
            "starting 3, 5, 7, 8 or 9, or a landline of 10 digits starting 2. Stored as "
            "`0` + digits. Never returned." + _OPTIONAL_NOTE
        ),
    ] = None

    @field_validator("phone")
    @classmethod
    def _stored_form(cls, phone: str | None) -> str | None:
        if phone is None:
            return None
        stored = domain.normalise_phone(phone)
        if stored is None:  # the grammar and normalise_phone are tested to agree
            raise _refuse("must be a Vietnamese phone number, e.g. 0912345678")
        return stored

    def to_domain(self) -> domain.Payer:
        return domain.Payer(self.name, self.id_number, self.phone)


class Item(_Body):
    """One line of the bill."""

    kind: Annotated[
        str,
        Text(
            domain.CODE_MAX_LENGTH,
            choices=tuple(kind.value for kind in ItemKind),
            grammar_message=f"must be one of {_KIND_LIST}",
        ),
        Field(description="What the line is, as public-service portals classify fees."),
    ]
    code: Annotated[
        str,
        Text(domain.CODE_MAX_LENGTH),
        Field(
            description="The fee's code; payments covering the same codes of a dossier "
            "twice make it `overpaid`."
        ),
    ]
    description: Annotated[
        str,
        Text(domain.DESCRIPTION_MAX_LENGTH),
        Field(description="Shown to the payer." + _TEXT_NOTE),
    ]
    amount: Annotated[Amount, Field(description="VND, a whole number (`1.0` is refused).")]

    def to_domain(self) -> domain.Item:
        return domain.Item(ItemKind(self.kind), self.code, self.description, self.amount)


def _known_banks(info: ValidationInfo) -> Collection[str]:
    context = info.context or {}
    banks: Collection[str] = context.get("known_banks", ())
    return banks


EXAMPLE_PAYMENT_REQUEST: Final[dict[str, Any]] = {
    "dossier": {
        "code": "H29.17-261127-0001",
        "procedure_code": "1.004227",
        "agency_code": "H29.17",
        "agency_name": "UBND quận Ba Đình",
    },
    "payer": {"name": "Nguyễn Văn An", "id_number": "001090001234", "phone": "0912345678"},
    "items": [
        {
            "kind": "charge",
            "code": "LPTB",
            "description": "Lệ phí trước bạ xe máy",
            "amount": 2400000,
        },
        {"kind": "fee", "code": "PCD", "description": "Phí cấp đăng ký", "amount": 150000},
    ],
    "amount": 2550000,
    "currency": "VND",
    "bank": "vnpay",
    "return_url": "https://portal.example/dossiers/H29.17-261127-0001/paid",
    "expires_in": 900,
}


class PaymentRequest(_Body):
    """A payment order.

    Unknown fields are refused at every level (`validation_failed`, one entry per field in
    `errors`, each named by its JSON path such as `items[0].amount`). Integers are JSON
    integers: `1.0`, `"100"` and `true` are refused. Beyond what this schema says, `amount`
    must equal the sum of `items[].amount`, and `bank`, when given, must be configured.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_PAYMENT_REQUEST]})

    dossier: DossierInput
    payer: PayerInput
    items: Annotated[list[Item], Field(min_length=domain.MIN_ITEMS, max_length=domain.MAX_ITEMS)]
    amount: Annotated[
        Amount,
        Field(
            description="VND; must equal the sum of `items[].amount` (`validation_failed` "
            "on `amount` otherwise)."
        ),
    ]
    currency: Annotated[
        str,
        Text(domain.CODE_MAX_LENGTH, choices=(CURRENCY,), grammar_message=f"must be {CURRENCY!r}"),
        Field(description="Vietnamese đồng, the only currency."),
    ]
    bank: Annotated[
        str | None,
        Text(domain.CODE_MAX_LENGTH, required=False, blank_absent=False),
        Field(
            description="A configured bank code; absent or `null`: the hub chooses the bank. "
            "A blank string names no bank and is refused.",
        ),
    ] = None
    return_url: Annotated[
        str,
        Text(
            domain.RETURN_URL_MAX_LENGTH,
            grammar=domain.RETURN_URL_PATTERN,
            grammar_message=lambda url: (
                domain.return_url_problem(url) or "must be an absolute https URL"
            ),
        ),
        Field(
            description="Where the bank sends the payer back: https to a host name or IPv4 "
            "address, or http only to localhost, 127.0.0.1 or [::1]; optional port; ASCII "
            "without spaces or control characters; no credentials."
        ),
    ]
    expires_in: Annotated[
        Annotated[int, Field(ge=domain.MIN_EXPIRES_IN, le=domain.MAX_EXPIRES_IN)] | None,
        Field(description="Seconds the payer has to pay; `null` means the default."),
    ] = domain.DEFAULT_EXPIRES_IN
    description: Annotated[
        str | None,
        Text(domain.DESCRIPTION_MAX_LENGTH, required=False),
        Field(description="Free text." + _TEXT_NOTE + _OPTIONAL_NOTE),
    ] = None

    @field_validator("amount")
    @classmethod
    def _adds_up(cls, amount: int, info: ValidationInfo) -> int:
        items: list[Item] | None = info.data.get("items")
        if items is not None:  # absent when the items themselves are invalid
            total = sum(item.amount for item in items)
            if total != amount:
                raise _refuse(f"must equal the sum of the item amounts ({total})")
        return amount

    @field_validator("bank")
    @classmethod
    def _configured(cls, bank: str | None, info: ValidationInfo) -> str | None:
        if bank is not None and bank not in _known_banks(info):
            configured = ", ".join(sorted(_known_banks(info))) or "none configured"
            raise _refuse(f"unknown bank (configured: {configured})")
        return bank

    @field_validator("expires_in")
    @classmethod
    def _default_expiry(cls, seconds: int | None) -> int:
        return domain.DEFAULT_EXPIRES_IN if seconds is None else seconds

    def to_domain(self) -> domain.PaymentRequest:
        assert self.expires_in is not None
        return domain.PaymentRequest(
            dossier=self.dossier.to_domain(),
            payer=self.payer.to_domain(),
            items=tuple(item.to_domain() for item in self.items),
            amount=self.amount,
            return_url=self.return_url,
            currency=self.currency,
            bank=self.bank,
            expires_in=self.expires_in,
            description=self.description,
        )


class RefundRequest(_Body):
    """A (partial) refund of a succeeded payment."""

    amount: Annotated[
        Amount,
        Field(description="VND; all refunds of a payment together never exceed its amount."),
    ]
    reason: Annotated[
        str | None,
        Text(domain.DESCRIPTION_MAX_LENGTH, required=False),
        Field(description="Why; default empty." + _TEXT_NOTE + _OPTIONAL_NOTE),
    ] = None

    def to_domain(self) -> domain.RefundRequestBody:
        return domain.RefundRequestBody(amount=self.amount, reason=self.reason or "")


# --------------------------------------------------------------------------- queries


def dossier_code(raw: str) -> str | None:
    """The dossier code in a query or path, by create's grammar; None if create refuses it."""
    if len(raw) > domain.DOSSIER_CODE_MAX_LENGTH or not domain.is_dossier_code(raw):
        return None
    return raw.strip()


_DOSSIER_PARAM_DESCRIPTION: Final = (
    "A dossier code, by the same grammar as `dossier.code` on create: 1–64 of "
    "`[A-Za-z0-9._-]`, not `.` or `..`, surrounding whitespace stripped."
)


def _ascii_integer(value: object) -> object:
    """A query integer: ASCII digits only (``"²"`` and ``"٣"`` are digits to ``isdigit``)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise _refuse("must be an integer")
        if len(value) > 9:  # int() of thousands of digits is slow, then refused anyway
            raise _refuse(f"must be at most {MAX_EVENTS_PAGE}")
        return int(value)
    return value


class _Query(BaseModel):
    """Query parameters: strings as sent, each field converting its own."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class PaymentListQuery(_Query):
    dossier: Annotated[
        str,
        Field(
            description=_DOSSIER_PARAM_DESCRIPTION,
            json_schema_extra={
                "minLength": 1,
                "maxLength": domain.DOSSIER_CODE_MAX_LENGTH,
                "pattern": domain.DOSSIER_CODE_PATTERN,
            },
        ),
    ]

    @field_validator("dossier")
    @classmethod
    def _grammar(cls, raw: str) -> str:
        code = dossier_code(raw)
        if code is None:
            raise _refuse("required, 1–64 chars of [A-Za-z0-9._-], not '.' or '..'")
        return code


class EventsQuery(_Query):
    after: Annotated[
        Annotated[str, Field(json_schema_extra={"pattern": EVENT_ID_PATTERN})] | None,
        Field(
            description="The last event id seen (`evt_` and 26 lower-case letters or digits); "
            "absent: from the first event. An empty value is refused, so that a client that "
            "lost its cursor is told rather than sent every event again.",
        ),
    ] = None
    limit: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_EVENTS_PAGE,
            description="Events per page: ASCII digits, 1–500.",
        ),
    ] = DEFAULT_EVENTS_PAGE

    @field_validator("after")
    @classmethod
    def _event_id(cls, after: str | None) -> str | None:
        if after is not None and _EVENT_ID.fullmatch(after) is None:
            raise _refuse("must be an event id (evt_…)")
        return after

    @field_validator("limit", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        return _ascii_integer(value)


# --------------------------------------------------------------------------- parsing


def _child(prefix: str, key: object) -> str:
    """The JSON path of ``key`` under ``prefix``; odd keys are quoted so paths stay readable."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(str(key), ensure_ascii=True)}]"


def _path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path = _child(path, part)
    return path


_TYPE_MESSAGES: Final = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
}


def _message(error: Mapping[str, Any], unknown: str) -> str:
    """The contract's words for one pydantic error (the types this module can raise)."""
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "payhub":
        return str(context["reason"])
    if kind == "missing" or (kind in _TYPE_MESSAGES and error["input"] is None):
        return "is required"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    if kind == "extra_forbidden":
        return unknown
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "too_short":
        count = context["min_length"]
        return f"must contain at least {count} item{'s' if count != 1 else ''}"
    if kind == "too_long":
        return f"must contain at most {context['max_length']} items"
    if kind == "string_too_short":
        return "is required"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters"
    return str(error["msg"])


def _problem(exc: ValidationError, *, unknown: str = "unknown field") -> ProblemError:
    errors = [
        FieldError(_path(error["loc"]), _message(error, unknown))
        for error in exc.errors(include_url=False, include_context=True, include_input=True)
    ]
    total = len(errors)
    first = errors[0]
    if total == 1:
        detail = f"{first.field}: {first.message}"
    else:
        detail = f"{total} fields are invalid; the first: {first.field}: {first.message}"
    return ProblemError("validation_failed", detail, errors=errors[: domain.MAX_REPORTED_ERRORS])


def _require_object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise ProblemError("malformed_request", "the request body must be a JSON object")
    return body


def parse_payment_request(body: object, *, known_banks: Collection[str]) -> domain.PaymentRequest:
    """Validate a ``POST /v1/payments`` body (already JSON-decoded).

    Raises ``ProblemError("malformed_request")`` when the body is not a JSON object and
    ``ProblemError("validation_failed", errors=[...])`` with every field error otherwise.
    ``known_banks`` are the configured bank codes a portal may ask for by name.
    """
    data = _require_object(body)
    try:
        wire = PaymentRequest.model_validate(data, context={"known_banks": known_banks})
    except ValidationError as exc:
        raise _problem(exc) from None
    return wire.to_domain()


def parse_refund_request(body: object) -> domain.RefundRequestBody:
    """Validate a refund body: ``amount`` required, ``reason`` optional (default ``""``).

    Whether the amount fits what is left to refund is the refund use case's business; here
    it only has to be a plausible VND amount.
    """
    data = _require_object(body)
    try:
        wire = RefundRequest.model_validate(data)
    except ValidationError as exc:
        raise _problem(exc) from None
    return wire.to_domain()


_Q = TypeVar("_Q", bound="_Query")


def _parse_query(model: type[_Q], query: Mapping[str, str]) -> _Q:
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise _problem(exc, unknown="unknown parameter") from None


def parse_payment_list_query(query: Mapping[str, str]) -> PaymentListQuery:
    """``GET /v1/payments``: ``dossier`` required, by create's grammar; nothing else."""
    return _parse_query(PaymentListQuery, query)


def parse_events_query(query: Mapping[str, str]) -> EventsQuery:
    """``GET /v1/events``: ``after`` (an event id) and ``limit`` (ASCII digits, 1–500)."""
    return _parse_query(EventsQuery, query)
