"""The connector port: the handful of things the hub asks of a bank.

A connector class speaks one protocol; a configured *bank* is a name bound to a
connector class plus its options (two VNPay merchant accounts are two banks, one class).
Amounts crossing this port are always ``int`` VND; each connector converts to its
protocol's unit at its own edge and back. Expected outcomes (declined, not found) are
values; transport failures and bad signatures raise from ``payhub.errors``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import aiohttp

from payhub.domain.clock import Clock
from payhub.errors import StatementError
from payhub.reconcile.entries import ByteSource, StatementEntry


@dataclass(frozen=True)
class PrivateFile:
    """A secret that ``demo_options`` asks ``payhub init`` to keep in a file, not in the config.

    ``init`` writes ``content`` to ``keys/<name>`` in the new setup, readable by its owner
    only (so it is listed with the setup's private keys and kept out of git), and puts the
    file's absolute path in the option instead.
    """

    name: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class ConnectorContext:
    """What the hub lends a connector: its HTTP client, its clock, where banks call back."""

    http: aiohttp.ClientSession
    clock: Clock
    notify_url: str
    """The hub's URL for this bank's confirmations (``{public_url}/banks/{bank}/notify``)."""


@dataclass(frozen=True)
class OrderRequest:
    """An order to place at the bank for one payment."""

    payment_id: str
    bank_reference: str
    """The hub's reference for this order at the bank (vnp_TxnRef, orderId, transfer text)."""
    amount: int
    order_info: str
    """Human description, may hold Vietnamese diacritics; the connector adapts it."""
    return_url: str
    created_at: datetime
    expires_at: datetime
    payer_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class PlacedOrder:
    """Where the payer goes to pay: a URL, an EMVCo QR payload, or both."""

    payment_url: str | None = None
    qr: str | None = None
    bank_order_id: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """A request a bank sent to the hub, as received (the connector verifies it)."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


class ConfirmationStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    """Not final yet (MoMo 1000/7000, VNPay status 01): changes nothing."""


@dataclass(frozen=True)
class Confirmation:
    """A verified statement by the bank about one order."""

    bank_reference: str
    amount: int
    status: ConfirmationStatus
    bank_transaction_id: str | None = None
    failure_code: str | None = None
    paid_at: datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


class ConfirmationOutcome(StrEnum):
    """What the hub did with a confirmation; the connector turns it into the bank's answer."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    UNKNOWN_ORDER = "unknown_order"
    AMOUNT_MISMATCH = "amount_mismatch"
    IGNORED = "ignored"
    """Valid but changes nothing (not final, or an illegal transition recorded in audit)."""
    SIGNATURE_INVALID = "signature_invalid"
    MALFORMED = "malformed"
    ERROR = "error"


_GRAVITY: tuple[ConfirmationOutcome, ...] = (
    ConfirmationOutcome.ERROR,
    ConfirmationOutcome.SIGNATURE_INVALID,
    ConfirmationOutcome.MALFORMED,
    ConfirmationOutcome.AMOUNT_MISMATCH,
    ConfirmationOutcome.UNKNOWN_ORDER,
    ConfirmationOutcome.IGNORED,
    ConfirmationOutcome.ALREADY_APPLIED,
    ConfirmationOutcome.APPLIED,
)


def gravest(outcomes: Sequence[ConfirmationOutcome]) -> ConfirmationOutcome:
    """The one outcome that speaks for a whole message: its gravest.

    An ``ERROR`` anywhere means something was not committed, so the bank must send the
    message again (what was committed applies once more as ``ALREADY_APPLIED``). A message
    that held no confirmation at all (a camt.054 of debits only) changed nothing: ``IGNORED``.
    """
    if not outcomes:
        return ConfirmationOutcome.IGNORED
    return min(outcomes, key=_GRAVITY.index)


@dataclass(frozen=True)
class BankAnswer:
    """The HTTP answer a bank's protocol expects for its confirmation."""

    status: int
    body: bytes = b""
    content_type: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    refund_id: str
    payment_bank_reference: str
    bank_transaction_id: str | None
    amount: int
    payment_amount: int
    paid_at: datetime | None
    reason: str


@dataclass(frozen=True)
class RefundResult:
    succeeded: bool
    bank_refund_id: str | None = None
    failure_code: str | None = None


@dataclass(frozen=True)
class StatementLine:
    """One transaction on a bank's statement, in VND."""

    bank_reference: str | None
    amount: int
    booked_at: datetime | None
    status: str
    bank_transaction_id: str | None = None
    text: str = ""
    fee: int = 0


class BankConnector(abc.ABC):
    """One bank protocol. Subclasses are registered in the ``payhub.banks`` entry points."""

    protocol: ClassVar[str]
    """The entry-point name, e.g. ``vnpay``."""
    min_amount: ClassVar[int] = 1
    max_amount: ClassVar[int] = 100_000_000_000
    supports_refund: ClassVar[bool] = True
    places_orders_locally: ClassVar[bool] = False
    """True when ``place_order`` only computes (a signed URL, a QR payload) and calls no one."""
    statement_format: ClassVar[str | None] = None
    """The format of the bank's daily statement: a reader's name in
    ``payhub.reconcile.formats`` (``vnpay-csv``, ``camt.053``, …); ``None``: it sends none."""

    def __init__(self, bank: str, options: Mapping[str, Any], context: ConnectorContext) -> None:
        self.bank = bank
        self.options = options
        self.context = context

    @classmethod
    @abc.abstractmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Problems with a bank's configured options (empty when valid), for start-up errors."""

    @classmethod
    def demo_options(cls, simulator_url: str) -> dict[str, Any]:
        """Options for a fresh local setup whose bank is this connector's simulator.

        A value may be a ``PrivateFile``: ``payhub init`` writes it and stores its path.
        """
        return {"base_url": simulator_url}

    @classmethod
    def statement_account(cls, options: Mapping[str, Any]) -> str | None:
        """The account this bank's statements name (a merchant code, an account number).

        Reconciliation refuses a statement naming another one: a finance user who picks
        the wrong file must not get a day of false exceptions. A class method over the
        options, because reconciling needs no connection to the bank. ``None``: the
        statements are not checked.
        """
        return None

    @abc.abstractmethod
    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        """Place the order; raises ``BankUnavailable`` when the bank did not take it."""

    @abc.abstractmethod
    def parse_confirmation(self, message: InboundMessage) -> Sequence[Confirmation]:
        """Verify and read a message's confirmations; raises ``ConfirmationRejected`` subclasses.

        A sequence because one message may speak of several orders (a camt.054 batches
        credits); an IPN holds exactly one. The message is verified as a whole before
        any confirmation is returned, so none is applied from a message that fails.
        """

    @abc.abstractmethod
    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        """The answer the bank's protocol expects for what the hub did."""

    def answer_confirmations(self, outcomes: Sequence[ConfirmationOutcome]) -> BankAnswer:
        """The one answer to a whole message, sent once every confirmation's effect is committed.

        By default the gravest outcome speaks for the message (see ``gravest``); a bank
        whose protocol answers per item overrides this.
        """
        return self.answer_confirmation(gravest(outcomes))

    @abc.abstractmethod
    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        """Ask the bank what became of an order; ``None`` when the bank does not know it."""

    @abc.abstractmethod
    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a paid order."""

    async def refund_outcome(self, request: RefundRequest) -> RefundResult | None:
        """What became of a refund the hub never heard the answer to; ``None``: cannot tell.

        Called by recovery for a refund left ``pending`` (the bank timed out, the answer
        was lost, the hub stopped between reserving the refund and asking). A bank whose
        refunds carry the hub's own id, so that asking again cannot refund twice, answers
        here; raising ``BankError`` means "ask again later". The default cannot tell:
        the refund stays pending for finance staff, because sending it again could pay
        the money back twice.
        """
        return None

    @property
    def recovers_refunds(self) -> bool:
        """Whether ``refund_outcome`` can tell (it is overridden)."""
        return type(self).refund_outcome is not BankConnector.refund_outcome

    def read_statement(self, stream: ByteSource) -> Iterator[StatementEntry]:
        """The bank's statement for one business day, line by line as ``stream`` is read.

        The file is never held whole: the reader of ``statement_format`` (one of
        ``payhub.reconcile.formats``) yields each line as it parses it, and refuses a
        statement naming another account than ``statement_account``. Reconciliation
        reads every statement this way; a bank with its own format registers a reader
        under its name and sets ``statement_format``.
        """
        from payhub.reconcile.entries import BankAccount
        from payhub.reconcile.formats import reader_for  # the readers' registry imports ports

        if self.statement_format is None:
            raise StatementError(f"bank {self.bank!r} sends no statement")
        number = self.statement_account(self.options)
        account = BankAccount(self.bank, number) if number else None
        return reader_for(self.statement_format, account)(stream)
