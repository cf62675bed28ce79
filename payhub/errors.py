"""The exception tree of PayHub.

::

    PayhubError
     ├── ConfigError                 the TOML configuration is invalid
     ├── ProblemError                a request the hub answers with an RFC 9457 problem
     │    │                          (code, status, detail, field errors; see CONTRACT §2)
     │    └── NoBankAvailable        every bank that could take the order is known down
     │                               (payhub.routing: 503 bank_unavailable, Retry-After)
     ├── BankError                   talking to a bank went wrong
     │    ├── BankUnavailable        the bank did not take the order (5xx, timeout, refused)
     │    └── BankAnswerInvalid      the bank answered, but not in its protocol
     ├── ConfirmationRejected        a bank confirmation that must not be applied
     │    ├── ConfirmationSignatureInvalid
     │    └── ConfirmationMalformed
     ├── StatementError              a statement file that cannot be read
     │    └── CamtError              an ISO 20022 camt document, with its line and element
     │                               (payhub.reconcile.camt)
     ├── LostRace                    another hub process changed the row first: the unit
     │                               runs again (payhub.service.unit_of_work)
     ├── LedgerClosed                the hub is shutting down: 503 not_ready (payhub.store.ledger)
     └── ReadOnlyUnit                a read-only query tried to write (payhub.store.ledger)

Errors raised outside the hub's own process tree stay outside it on purpose: the portal
SDK's ``WebhookVerificationError`` (``payhub.portal`` imports nothing else of PayHub) and the
simulators' own errors under ``banks/``.

Foreign exceptions are translated at the boundary with ``raise ... from exc`` so
callers only ever catch these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PayhubError(Exception):
    """Base of every error PayHub raises on purpose."""


class ConfigError(PayhubError):
    """The configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class FieldError:
    """One invalid field of a request body, named by its JSON path."""

    field: str
    message: str


# code -> (HTTP status, title); CONTRACT §2 fixes these.
PROBLEM_CODES: dict[str, tuple[int, str]] = {
    "malformed_request": (400, "Malformed request"),
    "idempotency_key_required": (400, "Idempotency-Key required"),
    "digest_mismatch": (400, "Content-Digest mismatch"),
    "signature_missing": (401, "Signature missing"),
    "signature_invalid": (401, "Signature invalid"),
    "signature_expired": (401, "Signature expired"),
    "signature_replayed": (401, "Signature replayed"),
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "idempotency_conflict": (409, "Idempotency-Key reused with a different request"),
    "idempotency_in_flight": (409, "Request with this Idempotency-Key still in progress"),
    "invalid_state": (409, "Not allowed in the payment's state"),
    "payload_too_large": (413, "Payload too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "validation_failed": (422, "Validation failed"),
    "refund_not_supported": (422, "Refund not supported"),
    "rate_limited": (429, "Rate limited"),
    "internal_error": (500, "Internal error"),
    "bank_unavailable": (503, "Bank unavailable"),
    "not_ready": (503, "Not ready"),
}


class ProblemError(PayhubError):
    """A request answered with an RFC 9457 problem document."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in PROBLEM_CODES:
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status, self.title = PROBLEM_CODES[code]
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": f"urn:payhub:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class BankError(PayhubError):
    """Talking to a bank went wrong."""


class BankUnavailable(BankError):
    """The bank did not take the request: refused, 5xx, timed out."""


class BankAnswerInvalid(BankError):
    """The bank answered, but the answer is not in its protocol or not signed right."""


class ConfirmationRejected(PayhubError):
    """A confirmation from a bank that must not be applied."""


class ConfirmationSignatureInvalid(ConfirmationRejected):
    """The confirmation's signature does not verify with the bank's key."""


class ConfirmationMalformed(ConfirmationRejected):
    """The confirmation lacks fields or has values outside the protocol."""


class StatementError(PayhubError):
    """A statement file that cannot be read safely."""
