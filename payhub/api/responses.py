"""The response bodies the hub sends, declared once, for the generated OpenAPI document.

These models are not used to build answers (the domain's ``to_public`` does, on the hot
path); they describe them, and the schemathesis test in ``tests/e2e/test_schemathesis.py``
checks every answer of a running hub against the document generated from them, so a
field added to ``to_public`` without a word here fails the suite. Response objects are
open (no ``additionalProperties: false``): clients should ignore fields added later.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from payhub.api.schemas import Item
from payhub.domain.states import EVENT_TYPE, PaymentStatus
from payhub.errors import PROBLEM_CODES

__all__ = [
    "DISCREPANCY_CLASSES",
    "DOSSIER_STATUSES",
    "EVENT_TYPES",
    "REFUND_STATUSES",
    "DossierSummary",
    "Event",
    "EventPage",
    "FieldError",
    "JwkSet",
    "Payment",
    "PaymentList",
    "Problem",
    "ReconciliationException",
    "ReconciliationRun",
    "ReconciliationRunDetail",
    "ReconciliationUpload",
    "Refund",
    "ResolveRequest",
    "Status",
    "WebhookPayload",
]

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


def _enum(values: tuple[str, ...] | list[str], description: str = "") -> Any:
    extra: dict[str, Any] = {"enum": list(values)}
    return Field(description=description or None, json_schema_extra=extra)


Timestamp = Annotated[
    str,
    Field(
        description="RFC 3339 with the +07:00 offset.", json_schema_extra={"format": "date-time"}
    ),
]


def _id(prefix: str) -> Any:
    return Field(json_schema_extra={"pattern": f"^{prefix}_"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PaymentDossier(_Answer):
    """The dossier as the portal sent it."""

    code: str
    procedure_code: str | None
    agency_code: str
    agency_name: str | None


class Payment(_Answer):
    """The payment object. The payer's id number and phone are never returned."""

    id: Annotated[str, _id("pay")]
    status: Annotated[
        str,
        _enum(
            [status.value for status in PaymentStatus],
            "`pending` (awaiting the payer) and `unknown` (the hub is finding out from the "
            "bank) may become `succeeded`, `failed`, `expired` or `cancelled`; those are final.",
        ),
    ]
    dossier: PaymentDossier
    amount: int
    currency: Annotated[str, Field(json_schema_extra={"const": "VND"})]
    items: list[Item]
    bank: str
    bank_reference: Annotated[
        str,
        Field(
            description="The reference the bank knows the order by; for a transfer the payer "
            "types it into the memo."
        ),
    ]
    payment_url: Annotated[
        Annotated[str, Field(json_schema_extra={"format": "uri"})] | None,
        Field(description="Where to send the payer; null for a transfer by QR."),
    ]
    qr: Annotated[str | None, Field(description="EMVCo QR payload.")]
    created_at: Timestamp
    expires_at: Timestamp
    paid_at: Annotated[
        Annotated[str, Field(json_schema_extra={"format": "date-time"})] | None,
        Field(description="RFC 3339 with the +07:00 offset; null until paid."),
    ]
    refunded_amount: Annotated[
        int,
        Field(
            ge=0,
            description="Grows with succeeded refunds; equals `amount` when fully refunded "
            "(the status stays `succeeded`).",
        ),
    ]
    failure_code: str | None


class PaymentList(_Answer):
    """This portal's payments for one dossier."""

    data: list[Payment]


class Refund(_Answer):
    """A refund of a payment."""

    id: Annotated[str, _id("rfd")]
    payment_id: Annotated[str, _id("pay")]
    amount: Annotated[int, Field(ge=1)]
    status: Annotated[str, _enum(REFUND_STATUSES)]
    created_at: Timestamp


class DossierSummary(_Answer):
    """Everything this portal paid for one dossier."""

    code: str
    payments: list[Payment]
    paid_amount: Annotated[int, Field(ge=0)]
    refunded_amount: Annotated[int, Field(ge=0)]
    status: Annotated[
        str,
        _enum(
            DOSSIER_STATUSES,
            "`overpaid`: more than one succeeded payment covers the same item codes.",
        ),
    ]


_EVENT_DATA: Final = (
    "`payment.*`: the payment object; `refund.*`: the refund object; `dossier.overpaid`: "
    "the dossier summary, as `GET /v1/dossiers/{code}` shows it."
)


class Event(_Answer):
    """A state change of a payment, refund or dossier; `id` is the webhook-id of its delivery."""

    id: Annotated[str, _id("evt")]
    type: Annotated[str, _enum(EVENT_TYPES)]
    timestamp: Timestamp
    data: Annotated[Payment | Refund | DossierSummary, Field(description=_EVENT_DATA)]


class EventPage(_Answer):
    """Events in creation order; ask again with `after` = the last id while `has_more`."""

    data: list[Event]
    has_more: bool


class WebhookPayload(_Answer):
    """The body of an event delivery (Standard Webhooks)."""

    type: Annotated[str, _enum(EVENT_TYPES)]
    timestamp: Timestamp
    data: Annotated[Payment | Refund | DossierSummary, Field(description=_EVENT_DATA)]


class ReconciliationRun(_Answer):
    """One reconciliation of a bank's statement for a day."""

    id: Annotated[str, _id("rec")]
    bank: str
    business_date: Annotated[str, Field(json_schema_extra={"format": "date"})]
    status: Annotated[str, _enum(RECONCILIATION_STATUSES)]
    counts: Annotated[dict[str, int], Field(description="Lines per discrepancy class.")]
    totals: Annotated[dict[str, int], Field(description="VND per discrepancy class.")]


class ReconciliationException(_Answer):
    """A statement line or hub payment that did not match cleanly."""

    id: str
    class_: Annotated[str, Field(alias="class"), _enum(DISCREPANCY_CLASSES)]
    resolution: str | None = None
    note: str | None = None


class ReconciliationRunDetail(ReconciliationRun):
    """A reconciliation run with its exceptions."""

    exceptions: list[ReconciliationException]


class ReconciliationUpload(BaseModel):
    """A statement to reconcile (multipart form)."""

    model_config = ConfigDict(extra="forbid")

    bank: Annotated[str, Field(description="The configured bank code.")]
    business_date: Annotated[str, Field(json_schema_extra={"format": "date"})]
    format: Annotated[
        str | None,
        Field(description="vnpay-csv, momo-csv, mt940, camt.053 (default: the bank's usual one)."),
    ] = None
    statement: Annotated[
        str,
        Field(
            description="The bank's statement file for that business day.",
            json_schema_extra={"contentMediaType": "application/octet-stream"},
        ),
    ]


class ResolveRequest(BaseModel):
    """How finance settled a reconciliation exception."""

    resolution: Annotated[str, Field(min_length=1)]
    note: Annotated[str, Field(min_length=1, description="Why (who, what).")]


class Jwk(_Answer):
    """An Ed25519 public key (RFC 8037)."""

    kty: Annotated[str, Field(json_schema_extra={"const": "OKP"})]
    crv: Annotated[str, Field(json_schema_extra={"const": "Ed25519"})]
    kid: str
    x: Annotated[str, Field(description="base64url public key")]
    use: str | None = None
    alg: str | None = None


class JwkSet(_Answer):
    """The hub's webhook-signing keys, current and still-valid old ones (RFC 7517)."""

    keys: list[Jwk]


class Status(_Answer):
    """An operations probe's answer."""

    status: str


class FieldError(_Answer):
    """One invalid field."""

    field: Annotated[
        str, Field(description="JSON path: `amount`, `dossier.code`, `items[0].amount`.")
    ]
    message: str


class Problem(_Answer):
    """An RFC 9457 problem; every 4xx/5xx answer is one."""

    type: Annotated[
        str,
        Field(description="`urn:payhub:problem:<code>`", json_schema_extra={"format": "uri"}),
    ]
    title: str
    status: int
    detail: str
    code: Annotated[str, _enum(list(PROBLEM_CODES))]
    errors: list[FieldError] = Field(default_factory=list)
