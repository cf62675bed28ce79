"""The OpenAPI 3.1 document the hub serves at ``GET /v1/openapi.json``.

CONTRACT.md fixes the wire format; this document is where everything the contract leaves
open is written down for portal developers. The request-body limits are not restated
here: they are read from ``payhub.domain.requests`` (and the problem codes from
``payhub.errors``), the same constants the validator enforces, so the document cannot
promise what the hub refuses. Everything is plain JSON values (dicts, lists, str, int,
bool, None) so the web layer can ``json.dumps`` it as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any, Final

from payhub import __version__
from payhub.domain import requests as rq
from payhub.domain.money import CURRENCY, MAX_PAYMENT, MIN_PAYMENT
from payhub.domain.states import EVENT_TYPE, PaymentStatus
from payhub.errors import PROBLEM_CODES

__all__ = ["EVENT_TYPES", "PROBLEM_WHEN", "openapi_document"]

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

EVENT_TYPES: Final = (
    *(event for event in EVENT_TYPE.values() if event is not None),
    "refund.succeeded",
    "refund.failed",
    "dossier.overpaid",
)
REFUND_STATUSES: Final = ("pending", "succeeded", "failed")
DOSSIER_STATUSES: Final = ("unpaid", "pending", "paid", "overpaid")
RECONCILIATION_STATUSES: Final = ("completed", "failed")
DISCREPANCY_CLASSES: Final = (
    "matched",
    "settled_by_statement",
    "missing_at_bank",
    "unknown_reference",
    "amount_mismatch",
    "duplicate",
    "status_mismatch",
    "previous_day",
    "next_day",
)
MAX_EVENTS_PAGE: Final = 500
DEFAULT_EVENTS_PAGE: Final = 100
# JSON Schema has no case-insensitive flag; the validator also takes upper-case schemes.
RETURN_URL_PATTERN: Final = r"^(https://|http://(localhost|127\.0\.0\.1|\[::1\])([:/?#]|$))"

# When each problem is answered (CONTRACT §2 for the fixed ones).
PROBLEM_WHEN: Final[dict[str, str]] = {
    "malformed_request": "the body is not JSON or not an object, or a header has bad syntax "
    "(an Idempotency-Key that is not 1–255 visible ASCII characters)",
    "idempotency_key_required": "the request needs an Idempotency-Key header",
    "digest_mismatch": "Content-Digest is missing or does not match the body",
    "signature_missing": "no Signature / Signature-Input fields",
    "signature_invalid": "wrong signature, unknown keyid, wrong alg, or a required component "
    "is not covered",
    "signature_expired": "the signature's created time is more than 300 s from the hub's clock",
    "signature_replayed": "the nonce was already used with this keyid in the last 600 s",
    "forbidden": "the principal may not use this route (a portal on /v1/finance, a finance "
    "user elsewhere)",
    "not_found": "unknown object, or another portal's",
    "method_not_allowed": "the route exists, but not with this method",
    "idempotency_conflict": "the Idempotency-Key was used before with a different body",
    "idempotency_in_flight": "the first request with this Idempotency-Key is still being "
    "processed; retry later",
    "invalid_state": "not allowed in the payment's current status",
    "payload_too_large": "a JSON body over 64 KiB, or a statement over the configured limit",
    "unsupported_media_type": "the body is not application/json (statements: not "
    "multipart/form-data)",
    "validation_failed": "a field or a business rule is violated; `errors` lists every field",
    "refund_not_supported": "the payment's bank cannot refund online",
    "rate_limited": "too many requests from this portal; wait for Retry-After seconds",
    "internal_error": "the hub failed; the answer carries the request id to report",
    "bank_unavailable": "no configured bank could accept the order now; nothing stays pending "
    "and the same Idempotency-Key may be retried",
    "not_ready": "the database is unreachable or its migrations are not current",
}

# Problems any signed /v1 request may get, and those only a request with a body may get.
_SIGNED: Final = (
    "malformed_request",
    "digest_mismatch",
    "signature_missing",
    "signature_invalid",
    "signature_expired",
    "signature_replayed",
    "forbidden",
    "rate_limited",
    "internal_error",
)
_WITH_BODY: Final = ("payload_too_large", "unsupported_media_type", "validation_failed")
_IDEMPOTENT: Final = ("idempotency_key_required", "idempotency_conflict", "idempotency_in_flight")

_SECURITY_DESCRIPTION: Final = """\
RFC 9421 HTTP Message Signatures (OpenAPI has no native scheme for them, so both fields are
declared as API-key headers and must be sent together). Every `/v1/*` request except
`GET /v1/openapi.json` carries one signature (any label) in `Signature-Input` and
`Signature`.

* Covered components, at least: `"@method"`, `"@path"`, `"@query"` (when the URL has
  one), `"content-digest"` and `"content-type"` when there is a body, and
  `"idempotency-key"` when that header is present.
* `Content-Digest` (RFC 9530) with `sha-256` or `sha-512` of the raw body.
* Parameters: `created` (required, within ±300 s of the hub's clock), `keyid` (required;
  a key registered for one portal or finance user), `nonce` (required; accepted once per
  keyid within 600 s), `alg` (optional; must equal the key's registered algorithm).
* Algorithms: `ed25519` (the hub holds only the public key) and `hmac-sha256` (shared
  secret of at least 32 bytes).

A portal's key opens `/v1/payments`, `/v1/dossiers` and `/v1/events`, and only ever shows
that portal's objects (another portal's is `404 not_found`); a finance user's key opens
`/v1/finance/*`."""


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> dict[str, str]:
    return _ref("schemas", name)


def _text(max_length: int, description: str, *, nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["string", "null"] if nullable else "string",
        "minLength": 1,
        "maxLength": max_length,
        "description": description,
    }


def _amount(description: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": MIN_PAYMENT,
        "maximum": MAX_PAYMENT,
        "description": description,
    }


def _closed(
    properties: dict[str, Any], required: Iterable[str], description: str
) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _open(properties: dict[str, Any], required: Iterable[str], description: str) -> dict[str, Any]:
    """A response object: clients should ignore fields added in later versions."""
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(required),
    }


_TEXT_NOTE: Final = (
    " Stored NFC-normalised and stripped of surrounding whitespace; control and format "
    "characters are refused; the length is counted after normalisation."
)


def _request_schemas(banks: Collection[str] | None) -> dict[str, Any]:
    bank: dict[str, Any] = {
        "type": ["string", "null"],
        "description": "A configured bank code; absent or null: the hub chooses the bank.",
    }
    if banks is not None:
        bank["enum"] = [*sorted(banks), None]
    return {
        "DossierInput": _closed(
            {
                "code": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": rq.DOSSIER_CODE_MAX_LENGTH,
                    "pattern": rq.DOSSIER_CODE_PATTERN,
                    "description": "The portal's dossier code; it appears in URL paths.",
                },
                "procedure_code": _text(
                    rq.CODE_MAX_LENGTH, "Administrative procedure code.", nullable=True
                ),
                "agency_code": _text(rq.CODE_MAX_LENGTH, "The receiving agency's code."),
                "agency_name": _text(
                    rq.NAME_MAX_LENGTH, "The agency's name." + _TEXT_NOTE, nullable=True
                ),
            },
            rq.DOSSIER_REQUIRED,
            "The dossier (hồ sơ) the payment settles.",
        ),
        "PayerInput": _closed(
            {
                "name": _text(rq.NAME_MAX_LENGTH, "The payer's full name." + _TEXT_NOTE),
                "id_number": {
                    "type": ["string", "null"],
                    "pattern": rq.ID_NUMBER_PATTERN,
                    "description": "CMND (9 digits) or CCCD (12 digits). Never returned.",
                },
                "phone": {
                    "type": ["string", "null"],
                    "maxLength": rq.CODE_MAX_LENGTH,
                    "pattern": rq.PHONE_PATTERN,
                    "description": "A Vietnamese number (`0…`, `+84…`, `84…`; spaces, dots, "
                    "dashes allowed): a mobile of 9 digits after the 0, or a landline of 10 "
                    "digits starting 02. Stored as `0` + digits. Never returned.",
                },
            },
            rq.PAYER_REQUIRED,
            "Who pays. `id_number` and `phone` are kept for the receipt, never returned.",
        ),
        "Item": _closed(
            {
                "kind": {"type": "string", "enum": [kind.value for kind in rq.ItemKind]},
                "code": _text(
                    rq.CODE_MAX_LENGTH,
                    "The fee's code; payments covering the same codes of a dossier twice "
                    "make it `overpaid`.",
                ),
                "description": _text(rq.DESCRIPTION_MAX_LENGTH, "Shown to the payer." + _TEXT_NOTE),
                "amount": _amount("VND, a whole number."),
            },
            rq.ITEM_REQUIRED,
            "One line of the bill.",
        ),
        "PaymentRequest": {
            **_closed(
                {
                    "dossier": _schema("DossierInput"),
                    "payer": _schema("PayerInput"),
                    "items": {
                        "type": "array",
                        "minItems": rq.MIN_ITEMS,
                        "maxItems": rq.MAX_ITEMS,
                        "items": _schema("Item"),
                    },
                    "amount": _amount("VND; must equal the sum of `items[].amount`."),
                    "currency": {"type": "string", "const": CURRENCY},
                    "bank": bank,
                    "return_url": {
                        "type": "string",
                        "format": "uri",
                        "maxLength": rq.RETURN_URL_MAX_LENGTH,
                        "pattern": RETURN_URL_PATTERN,
                        "description": "Where the bank sends the payer back: https, or "
                        "http only to localhost, 127.0.0.1 or [::1]; ASCII, no credentials.",
                    },
                    "expires_in": {
                        "type": ["integer", "null"],
                        "minimum": rq.MIN_EXPIRES_IN,
                        "maximum": rq.MAX_EXPIRES_IN,
                        "default": rq.DEFAULT_EXPIRES_IN,
                        "description": "Seconds the payer has to pay.",
                    },
                    "description": _text(
                        rq.DESCRIPTION_MAX_LENGTH, "Free text." + _TEXT_NOTE, nullable=True
                    ),
                },
                rq.PAYMENT_REQUIRED,
                "A payment order. Unknown fields are refused at every level "
                "(`validation_failed`, one entry per field in `errors`). A string that is "
                "empty after stripping counts as absent; `null` for an optional field too.",
            ),
            "examples": [EXAMPLE_PAYMENT_REQUEST],
        },
        "RefundRequest": _closed(
            {
                "amount": _amount(
                    "VND; all refunds of a payment together never exceed its amount."
                ),
                "reason": _text(
                    rq.DESCRIPTION_MAX_LENGTH, "Why; default empty." + _TEXT_NOTE, nullable=True
                ),
            },
            rq.REFUND_REQUIRED,
            "A (partial) refund of a succeeded payment.",
        ),
        "ResolveRequest": {
            "type": "object",
            "properties": {
                "resolution": {"type": "string", "minLength": 1},
                "note": {"type": "string", "minLength": 1, "description": "Why (who, what)."},
            },
            "required": ["resolution", "note"],
            "description": "How finance settled a reconciliation exception.",
        },
        "ReconciliationUpload": _closed(
            {
                "bank": {"type": "string", "description": "The configured bank code."},
                "business_date": {"type": "string", "format": "date"},
                "format": {
                    "type": "string",
                    "description": "vnpay-csv, momo-csv, mt940 (default: the bank's usual one).",
                },
                "statement": {
                    "type": "string",
                    "contentMediaType": "application/octet-stream",
                    "description": "The bank's statement file for that business day.",
                },
            },
            ("bank", "business_date", "statement"),
            "A statement to reconcile.",
        ),
    }


_TIMESTAMP: Final = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with the +07:00 offset.",
}
_NULLABLE_TIMESTAMP: Final = {**_TIMESTAMP, "type": ["string", "null"]}


def _response_schemas() -> dict[str, Any]:
    payment_fields = {
        "id": {"type": "string", "pattern": "^pay_"},
        "status": {
            "type": "string",
            "enum": [status.value for status in PaymentStatus],
            "description": "`pending` (awaiting the payer) and `unknown` (the hub is finding "
            "out from the bank) may become `succeeded`, `failed`, `expired` or "
            "`cancelled`; those are final.",
        },
        "dossier": _schema("PaymentDossier"),
        "amount": {"type": "integer"},
        "currency": {"type": "string", "const": CURRENCY},
        "items": {"type": "array", "items": _schema("Item")},
        "bank": {"type": "string"},
        "bank_reference": {
            "type": "string",
            "description": "The reference the bank knows the order by; for a transfer the "
            "payer types it into the memo.",
        },
        "payment_url": {"type": ["string", "null"], "format": "uri"},
        "qr": {"type": ["string", "null"], "description": "EMVCo QR payload."},
        "created_at": _TIMESTAMP,
        "expires_at": _TIMESTAMP,
        "paid_at": _NULLABLE_TIMESTAMP,
        "refunded_amount": {
            "type": "integer",
            "minimum": 0,
            "description": "Grows with succeeded refunds; equals `amount` when fully refunded "
            "(the status stays `succeeded`).",
        },
        "failure_code": {"type": ["string", "null"]},
    }
    refund_fields = {
        "id": {"type": "string", "pattern": "^rfd_"},
        "payment_id": {"type": "string", "pattern": "^pay_"},
        "amount": {"type": "integer", "minimum": MIN_PAYMENT},
        "status": {"type": "string", "enum": list(REFUND_STATUSES)},
        "created_at": _TIMESTAMP,
    }
    run_fields = {
        "id": {"type": "string", "pattern": "^rec_"},
        "bank": {"type": "string"},
        "business_date": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": list(RECONCILIATION_STATUSES)},
        "counts": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Lines per discrepancy class.",
        },
        "totals": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "VND per discrepancy class.",
        },
    }
    return {
        "PaymentDossier": _open(
            {
                "code": {"type": "string"},
                "procedure_code": {"type": ["string", "null"]},
                "agency_code": {"type": "string"},
                "agency_name": {"type": ["string", "null"]},
            },
            rq.DOSSIER_FIELDS,
            "The dossier as the portal sent it.",
        ),
        "Payment": _open(
            payment_fields,
            payment_fields,
            "The payment object. The payer's id number and phone are never returned.",
        ),
        "PaymentList": _open(
            {"data": {"type": "array", "items": _schema("Payment")}},
            ("data",),
            "This portal's payments for one dossier.",
        ),
        "Refund": _open(refund_fields, refund_fields, "A refund of a payment."),
        "DossierSummary": _open(
            {
                "code": {"type": "string"},
                "payments": {"type": "array", "items": _schema("Payment")},
                "paid_amount": {"type": "integer", "minimum": 0},
                "refunded_amount": {"type": "integer", "minimum": 0},
                "status": {
                    "type": "string",
                    "enum": list(DOSSIER_STATUSES),
                    "description": "`overpaid`: more than one succeeded payment covers the "
                    "same item codes.",
                },
            },
            ("code", "payments", "paid_amount", "refunded_amount", "status"),
            "Everything this portal paid for one dossier.",
        ),
        "Event": _open(
            {
                "id": {"type": "string", "pattern": "^evt_"},
                "type": {"type": "string", "enum": list(EVENT_TYPES)},
                "timestamp": _TIMESTAMP,
                "data": {"anyOf": [_schema("Payment"), _schema("Refund")]},
            },
            ("id", "type", "timestamp", "data"),
            "A state change of a payment or refund; `id` is the webhook-id of its delivery.",
        ),
        "EventPage": _open(
            {
                "data": {"type": "array", "items": _schema("Event")},
                "has_more": {"type": "boolean"},
            },
            ("data", "has_more"),
            "Events in creation order; ask again with `after` = the last id while `has_more`.",
        ),
        "WebhookPayload": _open(
            {
                "type": {"type": "string", "enum": list(EVENT_TYPES)},
                "timestamp": _TIMESTAMP,
                "data": {"anyOf": [_schema("Payment"), _schema("Refund")]},
            },
            ("type", "timestamp", "data"),
            "The body of an event delivery (Standard Webhooks).",
        ),
        "ReconciliationRun": _open(
            run_fields, run_fields, "One reconciliation of a bank's statement for a day."
        ),
        "ReconciliationRunDetail": {
            "allOf": [
                _schema("ReconciliationRun"),
                {
                    "type": "object",
                    "properties": {
                        "exceptions": {
                            "type": "array",
                            "items": _schema("ReconciliationException"),
                        }
                    },
                    "required": ["exceptions"],
                },
            ]
        },
        "ReconciliationException": _open(
            {
                "id": {"type": "string"},
                "class": {"type": "string", "enum": list(DISCREPANCY_CLASSES)},
                "resolution": {"type": ["string", "null"]},
                "note": {"type": ["string", "null"]},
            },
            ("id", "class"),
            "A statement line or hub payment that did not match cleanly.",
        ),
        "JwkSet": _open(
            {
                "keys": {
                    "type": "array",
                    "items": _open(
                        {
                            "kty": {"type": "string", "const": "OKP"},
                            "crv": {"type": "string", "const": "Ed25519"},
                            "kid": {"type": "string"},
                            "x": {"type": "string", "description": "base64url public key"},
                            "use": {"type": "string"},
                            "alg": {"type": "string"},
                        },
                        ("kty", "crv", "kid", "x"),
                        "An Ed25519 public key (RFC 8037).",
                    ),
                }
            },
            ("keys",),
            "The hub's webhook-signing keys, current and still-valid old ones (RFC 7517).",
        ),
        "Status": _open(
            {"status": {"type": "string"}}, ("status",), "An operations probe's answer."
        ),
        "FieldError": _open(
            {
                "field": {
                    "type": "string",
                    "description": "JSON path: `amount`, `dossier.code`, `items[0].amount`.",
                },
                "message": {"type": "string"},
            },
            ("field", "message"),
            "One invalid field.",
        ),
        "Problem": _open(
            {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "description": "`urn:payhub:problem:<code>`",
                },
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string", "enum": list(PROBLEM_CODES)},
                "errors": {"type": "array", "items": _schema("FieldError")},
            },
            ("type", "title", "status", "detail", "code"),
            "An RFC 9457 problem; every 4xx/5xx answer is one.\n\n"
            + "\n".join(
                f"* `{code}` ({status}): {PROBLEM_WHEN[code]}"
                for code, (status, _title) in PROBLEM_CODES.items()
            ),
        ),
    }


EXAMPLE_PAYMENT_REQUEST: Final = {
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


def _problems(*codes: str) -> dict[str, Any]:
    """One response per status, listing exactly the problem codes this route can answer."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(PROBLEM_CODES[code][0], []).append(code)
    responses: dict[str, Any] = {}
    for status, group in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {PROBLEM_WHEN[code]}" for code in group),
            "content": {
                PROBLEM_JSON: {
                    "schema": {
                        "allOf": [_schema("Problem")],
                        "properties": {"code": {"enum": group}},
                    }
                }
            },
        }
        if status == 429:
            response["headers"] = {"Retry-After": _ref("headers", "RetryAfter")}
        responses[str(status)] = response
    return responses


def _json(schema_name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": _schema(schema_name)}},
        **extra,
    }


def _json_body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _schema(schema_name)}}}


_REPLAYED: Final = {"headers": {"Idempotency-Replayed": _ref("headers", "IdempotencyReplayed")}}


def _operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: Iterable[dict[str, Any]] = (),
    request_body: dict[str, Any] | None = None,
    unsigned: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
    }
    if description:
        operation["description"] = description
    params = list(parameters)
    if params:
        operation["parameters"] = params
    if request_body is not None:
        operation["requestBody"] = request_body
    if unsigned:
        operation["security"] = []
    operation["responses"] = responses
    return operation


def _finance_page_paths() -> dict[str, Any]:
    """The finance web page: HTML for people, signed in by ``payhub finance login``."""
    html = {"text/html": {"schema": {"type": "string"}}}
    signed_out = {"401": {"description": "Not signed in: how to sign in.", "content": html}}
    return {
        "/finance": {
            "get": _operation(
                "financePage",
                "finance",
                "The finance page: runs, totals, exceptions",
                {"200": {"description": "The page.", "content": html}, **signed_out},
                unsigned=True,
            )
        },
        "/finance/login": {
            "get": _operation(
                "financeLogin",
                "finance",
                "Exchange a one-time login link for a session cookie",
                {"303": {"description": "Signed in; to /finance."}, **signed_out},
                unsigned=True,
            )
        },
        "/finance/logout": {
            "get": _operation(
                "financeLogout",
                "finance",
                "Sign out",
                {"303": {"description": "Signed out; to /finance."}, **signed_out},
                unsigned=True,
            )
        },
        "/finance/runs/{run}/report.csv": {
            "get": _operation(
                "financePageReport",
                "finance",
                "A run's CSV report, for a signed-in person",
                {
                    "200": {"description": "The report.", "content": {"text/csv": {}}},
                    **signed_out,
                    **_problems("not_found"),
                },
                parameters=[
                    {"name": "run", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                unsigned=True,
            )
        },
        "/finance/exceptions/{exception}/resolve": {
            "post": _operation(
                "financePageResolve",
                "finance",
                "Resolve an exception from the page (form post with its anti-forgery value)",
                {"303": {"description": "Back to the page, with a notice."}, **signed_out},
                parameters=[
                    {
                        "name": "exception",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                unsigned=True,
            )
        },
    }


def _paths() -> dict[str, Any]:
    idempotency = _ref("parameters", "IdempotencyKey")
    digest = _ref("parameters", "ContentDigest")
    payment_id = _ref("parameters", "PaymentId")
    return {
        "/v1/payments": {
            "post": _operation(
                "createPayment",
                "payments",
                "Create a payment order",
                {
                    "201": _json("Payment", "Created; the order is placed at a bank."),
                    "200": _json(
                        "Payment",
                        "The same Idempotency-Key and body were seen within 24 h: "
                        "the payment created then.",
                        **_REPLAYED,
                    ),
                    **_problems(*_SIGNED, *_WITH_BODY, *_IDEMPOTENT, "bank_unavailable"),
                },
                parameters=[idempotency, digest],
                request_body=_json_body("PaymentRequest"),
                description="The body is validated completely: a `validation_failed` answer "
                "lists every invalid field in `errors`. `amount` must equal the sum of the "
                "items; `bank`, when given, must be configured. Retry with the same "
                "Idempotency-Key after a timeout or `bank_unavailable`.",
            ),
            "get": _operation(
                "listPayments",
                "payments",
                "This portal's payments for a dossier",
                {
                    "200": _json("PaymentList", "The payments, oldest first."),
                    **_problems(*_SIGNED, "validation_failed"),
                },
                parameters=[
                    {
                        "name": "dossier",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": rq.DOSSIER_CODE_PATTERN,
                        },
                    }
                ],
            ),
        },
        "/v1/payments/{id}": {
            "get": _operation(
                "getPayment",
                "payments",
                "One payment",
                {
                    "200": _json("Payment", "The payment."),
                    **_problems(*_SIGNED, "not_found"),
                },
                parameters=[payment_id],
            ),
        },
        "/v1/payments/{id}/cancel": {
            "post": _operation(
                "cancelPayment",
                "payments",
                "Cancel a pending payment",
                {
                    "200": _json("Payment", "The payment, now `cancelled`."),
                    **_problems(*_SIGNED, *_WITH_BODY, "not_found", "invalid_state"),
                },
                parameters=[payment_id],
                request_body={
                    "required": False,
                    "content": {JSON: {"schema": {"type": "object", "maxProperties": 0}}},
                },
                description="Only a `pending` or `unknown` payment can be cancelled; "
                "otherwise `409 invalid_state`. No body, or `{}`.",
            ),
        },
        "/v1/payments/{id}/refunds": {
            "post": _operation(
                "createRefund",
                "payments",
                "Refund (part of) a succeeded payment",
                {
                    "201": _json("Refund", "The refund, `pending` until the bank answers."),
                    "200": _json(
                        "Refund",
                        "The same Idempotency-Key and body were seen before: that refund.",
                        **_REPLAYED,
                    ),
                    **_problems(
                        *_SIGNED,
                        *_WITH_BODY,
                        *_IDEMPOTENT,
                        "not_found",
                        "invalid_state",
                        "refund_not_supported",
                        "bank_unavailable",
                    ),
                },
                parameters=[payment_id, idempotency, digest],
                request_body=_json_body("RefundRequest"),
                description="Refunds of a payment never add up to more than its amount "
                "(`validation_failed`); only a `succeeded` payment can be refunded "
                "(`invalid_state`).",
            ),
        },
        "/v1/dossiers/{code}": {
            "get": _operation(
                "getDossier",
                "dossiers",
                "What this portal's payments did for a dossier",
                {
                    "200": _json("DossierSummary", "The dossier."),
                    **_problems(*_SIGNED, "not_found"),
                },
                parameters=[
                    {
                        "name": "code",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": rq.DOSSIER_CODE_PATTERN},
                    }
                ],
            ),
        },
        "/v1/events": {
            "get": _operation(
                "listEvents",
                "events",
                "Events this portal missed",
                {
                    "200": _json("EventPage", "Events after `after`, in creation order."),
                    **_problems(*_SIGNED, "validation_failed"),
                },
                parameters=[
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The last event id seen; absent: from the first.",
                        "schema": {"type": "string", "pattern": "^evt_"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_EVENTS_PAGE,
                            "default": DEFAULT_EVENTS_PAGE,
                        },
                    },
                ],
            ),
        },
        "/v1/finance/reconciliations": {
            "post": _operation(
                "createReconciliation",
                "finance",
                "Reconcile a bank statement",
                {
                    "201": _json("ReconciliationRun", "The run, finished."),
                    **_problems(*_SIGNED, *_WITH_BODY),
                },
                parameters=[digest],
                request_body={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _schema("ReconciliationUpload")}},
                },
                description="Finance users only. The statement may be up to the configured "
                "limit (default 256 MiB).",
            ),
        },
        "/v1/finance/reconciliations/{id}": {
            "get": _operation(
                "getReconciliation",
                "finance",
                "A reconciliation run and its exceptions",
                {
                    "200": _json("ReconciliationRunDetail", "The run."),
                    **_problems(*_SIGNED, "not_found"),
                },
                parameters=[_ref("parameters", "ReconciliationId")],
            ),
        },
        "/v1/finance/reconciliations/{id}/report.csv": {
            "get": _operation(
                "getReconciliationReport",
                "finance",
                "The run as CSV",
                {
                    "200": {
                        "description": "One line per statement line and per unmatched hub "
                        "payment, with its discrepancy class.",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_problems(*_SIGNED, "not_found"),
                },
                parameters=[_ref("parameters", "ReconciliationId")],
            ),
        },
        "/v1/finance/exceptions/{id}/resolve": {
            "post": _operation(
                "resolveException",
                "finance",
                "Record how an exception was settled",
                {
                    "200": _json("ReconciliationException", "The exception, resolved."),
                    **_problems(*_SIGNED, *_WITH_BODY, "not_found"),
                },
                parameters=[
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    digest,
                ],
                request_body=_json_body("ResolveRequest"),
            ),
        },
        **_finance_page_paths(),
        "/v1/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "operations",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                unsigned=True,
            ),
        },
        "/.well-known/jwks.json": {
            "get": _operation(
                "getJwks",
                "operations",
                "The hub's webhook-signing public keys",
                {"200": _json("JwkSet", "The JWK Set.")},
                unsigned=True,
            ),
        },
        "/healthz": {
            "get": _operation(
                "healthz",
                "operations",
                "The process is alive",
                {"200": _json("Status", "Alive.")},
                unsigned=True,
            ),
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "operations",
                "The database is reachable and its migrations are current",
                {"200": _json("Status", "Ready."), **_problems("not_ready")},
                unsigned=True,
            ),
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "operations",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                unsigned=True,
            ),
        },
    }


def _webhooks() -> dict[str, Any]:
    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }

    return {
        "event": {
            "post": {
                "operationId": "receiveEvent",
                "tags": ["events"],
                "summary": "An event delivered to the portal's callback URL",
                "description": "Standard Webhooks. Answer 2xx within 15 s; anything else is "
                "retried at about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h "
                "(±10 %), then the event is dead until replayed. `410 Gone` disables the "
                "endpoint until an operator re-enables it. Missed events can also be "
                "fetched with `GET /v1/events`.",
                "security": [],
                "parameters": [
                    header("webhook-id", "The event id (`evt_…`), the same on every retry."),
                    header("webhook-timestamp", "Unix seconds of this attempt."),
                    header(
                        "webhook-signature",
                        "Space-separated: `v1a,<base64 Ed25519>` over "
                        "`{webhook-id}.{webhook-timestamp}.{body}` with each current hub key "
                        "(see `/.well-known/jwks.json`), plus `v1,<base64 HMAC-SHA256>` when "
                        "the portal has a `whsec_` secret.",
                    ),
                ],
                "requestBody": _json_body("WebhookPayload"),
                "responses": {
                    "2XX": {"description": "Delivered."},
                    "410": {"description": "Disable this endpoint."},
                },
            }
        }
    }


def _components(banks: Collection[str] | None) -> dict[str, Any]:
    return {
        "securitySchemes": {
            "Signature": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature",
                "description": _SECURITY_DESCRIPTION,
            },
            "SignatureInput": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature-Input",
                "description": "The `Signature-Input` half of the RFC 9421 signature; see "
                "`Signature`.",
            },
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "1–255 visible ASCII characters; the same key with the same "
                "body within 24 h replays the first answer, with a different body is "
                "`409 idempotency_conflict`. Covered by the signature.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]{1,255}$",
                },
            },
            "ContentDigest": {
                "name": "Content-Digest",
                "in": "header",
                "required": True,
                "description": "RFC 9530 digest of the raw body, `sha-256` or `sha-512`, "
                "e.g. `sha-256=:<base64>:`. Covered by the signature.",
                "schema": {"type": "string"},
            },
            "PaymentId": {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^pay_"},
            },
            "ReconciliationId": {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^rec_"},
            },
        },
        "headers": {
            "IdempotencyReplayed": {
                "required": True,
                "description": "`true`: this answer replays an earlier request's.",
                "schema": {"type": "string", "const": "true"},
            },
            "RetryAfter": {
                "required": True,
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer", "minimum": 0},
            },
        },
        "schemas": {**_request_schemas(banks), **_response_schemas()},
    }


def openapi_document(public_url: str, *, banks: Collection[str] | None = None) -> dict[str, Any]:
    """The portal-facing API as an OpenAPI 3.1 document, served from ``public_url``.

    ``banks``, when given, lists the configured bank codes as the enum of
    ``PaymentRequest.bank``; without it the field is documented as free text.
    """
    document = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "PayHub",
            "version": __version__,
            "summary": "Online-fee payments for public-service portals.",
            "description": "Portals create payment orders for dossiers and learn the outcome "
            "from signed webhooks or `GET /v1/events`; finance users reconcile bank "
            "statements. All amounts are whole VND (integers); all timestamps are RFC 3339 "
            "with the +07:00 offset. Every error is an RFC 9457 problem "
            "(`application/problem+json`) whose `code` says what happened.",
        },
        "servers": [{"url": public_url.rstrip("/") or "/"}],
        "security": [{"Signature": [], "SignatureInput": []}],
        "tags": [
            {"name": "payments", "description": "Payment orders and refunds (portals)."},
            {"name": "dossiers", "description": "Payments per dossier (portals)."},
            {"name": "events", "description": "State changes sent to portals."},
            {"name": "finance", "description": "Reconciliation (finance users)."},
            {"name": "operations", "description": "Unsigned: discovery and probes."},
        ],
        "paths": _paths(),
        "webhooks": _webhooks(),
        "components": _components(banks),
    }
    # Module-level pieces (examples, timestamp schemas) must not be shared with a caller.
    return copy.deepcopy(document)
