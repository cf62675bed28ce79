"""The hub's side of VietQR bank transfers: a dynamic QR out, signed camt.054 credits in.

Options (the bank's TOML table):

- ``bin`` (6 digits) and ``account`` (at most 19 letters or digits): the agency's
  collection account, written into every QR;
- ``bank_public_key``: the collecting bank's public key, PEM (EC P-256 or RSA ≥ 2048);
  every credit notification must carry its signature (``banks.vietqr.signing``: header
  ``PayHub-Bank-Signature``, over the raw body); there is no unsigned path;
- optional ``base_url``: a page that shows the payer the QR (the simulator's ``/qr``);
  without it ``payment_url`` is null and the portal shows the ``qr`` payload itself.

Placing an order calls no one: the QR is computed (amount, and the payment's bank
reference as the purpose, field 62/08). The payer transfers from any banking app, which
may mangle the text; each credit of a notification is matched to a payment by
``find_transfer_reference`` in the transfer text, then in the bank's reference fields,
never by a guess. Only ``BOOK`` credits pay; ``PDNG`` and ``INFO`` are pending news that
change nothing; debits are skipped. The hub's use case compares the amount: an under- or
over-payment is recorded (``confirmation.amount_mismatch``) and the payment stays as it is.

The bank's answer covers the whole notification: ``200`` JSON ``{"outcomes": [...]}`` once
every credit's effect is committed (an unknown or mismatched credit is still *received*:
it waits for reconciliation, and the bank need not send it again); ``503`` when a credit
could not be applied (the bank resends the notification, which applies once);
``400`` for a bad signature or an unreadable document.

No refunds online (``refund_not_supported``), no status query (a transfer the bank did not
notify shows in the day's camt.053, ``read_statement``).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from banks.vietqr import signing
from banks.vietqr.emvco import VietQR, VietQRError, encode_vietqr
from payhub.connectors.port import (
    BankAnswer,
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
    PlacedOrder,
    PrivateFile,
    RefundRequest,
    RefundResult,
)
from payhub.domain.clock import VIETNAM
from payhub.domain.reference import find_transfer_reference
from payhub.errors import (
    BankAnswerInvalid,
    ConfigError,
    ConfirmationMalformed,
    ConfirmationSignatureInvalid,
    ProblemError,
)
from payhub.reconcile.camt import CamtError, CamtLine, CamtReader, CreditDebit
from payhub.reconcile.camt import vnd_amount as camt_vnd_amount

MAX_NOTIFICATION_BYTES = 64 * 1024
_RECEIVED = frozenset(
    {
        ConfirmationOutcome.APPLIED,
        ConfirmationOutcome.ALREADY_APPLIED,
        ConfirmationOutcome.IGNORED,
        ConfirmationOutcome.UNKNOWN_ORDER,
        ConfirmationOutcome.AMOUNT_MISMATCH,
    }
)
_REJECTED = frozenset({ConfirmationOutcome.SIGNATURE_INVALID, ConfirmationOutcome.MALFORMED})


class VietqrConnector(BankConnector):
    """Bank transfer by dynamic VietQR into the agency's collection account."""

    protocol: ClassVar[str] = "vietqr"
    statement_format: ClassVar[str | None] = "camt.053"
    supports_refund: ClassVar[bool] = False
    places_orders_locally: ClassVar[bool] = True

    def __init__(self, bank: str, options: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(bank, options, context)
        problems = self.check_options(options)
        if problems:
            raise ConfigError("; ".join(problems))
        self.bin: str = options["bin"]
        self.account: str = options["account"]
        self.public_key = signing.load_public_key(options["bank_public_key"])
        base_url = options.get("base_url")
        self.base_url: str | None = base_url.rstrip("/") if base_url else None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        bin_, account = options.get("bin"), options.get("account")
        if not (isinstance(bin_, str) and len(bin_) == 6 and bin_.isascii() and bin_.isdigit()):
            problems.append('bin must be the bank\'s 6-digit BIN, e.g. "970436"')
        if not (
            isinstance(account, str)
            and 1 <= len(account) <= 19
            and account.isascii()
            and account.isalnum()
        ):
            problems.append("account must be 1–19 letters or digits")
        key = options.get("bank_public_key")
        if not isinstance(key, str):
            problems.append("bank_public_key must be the bank's public key, PEM")
        else:
            try:
                signing.load_public_key(key)
            except ValueError as exc:
                problems.append(str(exc))
        base_url = options.get("base_url")
        if base_url is not None and not (
            isinstance(base_url, str) and base_url.startswith(("http://", "https://"))
        ):
            problems.append("base_url must be an http(s) URL when given")
        return problems

    @classmethod
    def statement_account(cls, options: Mapping[str, Any]) -> str | None:
        """The camt.053's ``Stmt/Acct/Id`` is the collection account the QRs name."""
        account = options.get("account")
        return account if isinstance(account, str) else None

    @classmethod
    def demo_options(cls, simulator_url: str) -> dict[str, Any]:
        """A collection account at the simulator, and a fresh key pair for its signatures.

        The simulated bank signs with the private key that ``payhub init`` writes to
        ``keys/vietqr-bank.pem`` (``simulator_signing_key_file``; the hub never reads it);
        a real bank keeps its private key and gives the agency only the public one.
        """
        private, public = signing.new_demo_key_pair()
        return {
            "bin": "970436",
            "account": "0011" + "".join(secrets.choice(string.digits) for _ in range(9)),
            "bank_public_key": public,
            "simulator_signing_key_file": PrivateFile("vietqr-bank.pem", private.encode()),
            "base_url": simulator_url,
        }

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        """The dynamic QR of the order; computed here, the bank learns of it from the payer."""
        try:
            payload = encode_vietqr(
                VietQR(
                    bin=self.bin,
                    account=self.account,
                    amount=order.amount,
                    purpose=order.bank_reference,
                )
            )
        except VietQRError as exc:
            raise BankAnswerInvalid(f"VietQR cannot hold this order: {exc}") from exc
        url = f"{self.base_url}/qr?payload={quote(payload, safe='')}" if self.base_url else None
        return PlacedOrder(payment_url=url, qr=payload)

    def parse_confirmation(self, message: InboundMessage) -> Sequence[Confirmation]:
        """The credits of a signed camt.054; the signature is checked before any byte is read."""
        header = next(
            (v for k, v in message.headers.items() if k.lower() == signing.HEADER.lower()), None
        )
        if not signing.verify(self.public_key, message.body, header):
            raise ConfirmationSignatureInvalid(f"camt.054 {signing.HEADER} missing or wrong")
        reader = CamtReader(message.body, max_bytes=MAX_NOTIFICATION_BYTES)
        try:
            lines = list(reader)
        except CamtError as exc:
            raise ConfirmationMalformed(str(exc)) from exc
        if reader.kind != "camt.054":
            raise ConfirmationMalformed(f"a {reader.kind} where a camt.054 is expected")
        for statement in reader.statements:
            if statement.account is not None and statement.account != self.account:
                raise ConfirmationMalformed("camt.054 for another account")
        return tuple(
            self._confirmation(line) for line in lines if line.direction is CreditDebit.CREDIT
        )

    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        return self.answer_confirmations([outcome])

    def answer_confirmations(self, outcomes: Sequence[ConfirmationOutcome]) -> BankAnswer:
        """200 when every credit was received; 503 to have it resent; 400 when refused."""
        if any(outcome in _REJECTED for outcome in outcomes):
            status = 400
        elif all(outcome in _RECEIVED for outcome in outcomes):
            status = 200
        else:
            status = 503
        body = json.dumps({"outcomes": [outcome.value for outcome in outcomes]}).encode()
        return BankAnswer(status=status, body=body, content_type="application/json")

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        """A bank transfer cannot be asked about; the day's camt.053 tells what arrived."""
        return None

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise ProblemError("refund_not_supported", f"bank {self.bank!r} cannot refund online")

    def _confirmation(self, line: CamtLine) -> Confirmation:
        try:
            amount = camt_vnd_amount(line)
        except CamtError as exc:
            raise ConfirmationMalformed(str(exc)) from exc
        if amount <= 0:
            raise ConfirmationMalformed(f"camt.054 line {line.line}: a credit of {amount} VND")
        transaction_id = (
            line.transaction_account_servicer_reference
            or line.account_servicer_reference
            or line.uetr
            or line.end_to_end_id
        )
        booked = line.booked and not line.reversal
        paid_at = line.booked_at
        if paid_at is None and line.booking_date is not None:
            paid_at = datetime.combine(line.booking_date, datetime.min.time(), VIETNAM)
        return Confirmation(
            bank_reference=transfer_reference(line) or "",
            amount=amount,
            status=ConfirmationStatus.SUCCEEDED if booked else ConfirmationStatus.PENDING,
            bank_transaction_id=transaction_id,
            paid_at=paid_at if booked else None,
            raw={"status": line.status, "entry": str(line.entry_index)},
        )


def transfer_reference(line: CamtLine) -> str | None:
    """The one payment reference a credit names, in its text or its bank references.

    Each place is read with ``find_transfer_reference`` (which names one reference or
    none); when two places name different references, the credit names none: it goes to
    reconciliation, never to a guess.
    """
    places = (
        line.text,
        line.end_to_end_id,
        line.transaction_account_servicer_reference,
        line.account_servicer_reference,
    )
    found = {ref for place in places if place and (ref := find_transfer_reference(place))}
    return found.pop() if len(found) == 1 else None
