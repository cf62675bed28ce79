"""The unit of work: the only way use cases reach storage.

A use case hands a *unit* (an async function of a ``UnitOfWork``) to the ``UnitRunner``,
which is the group-commit ledger in the hub and ``tests/fakes.FakeLedger`` in unit
tests. Through the unit of work the unit reads and changes payments, refunds,
idempotency keys and nonces (its repositories), extends the audit trail and puts portal
events into the outbox. The runner commits many units in one database transaction and
answers each caller only after that commit.

This is cosmicpython's ``AbstractUnitOfWork`` shaped for group commit: a unit that
returns commits with its batch; a unit that raises, whatever it raises and whenever,
leaves no trace (its writes, audit entries, events and claims are rolled back) while its
batch neighbours commit. So a unit may check, write, check again and decline.

Rules for units, kept by the runner rather than by the unit's author:

- a unit may be run more than once (another hub process changed a row under it:
  ``LostRace``), so it does no HTTP and holds no state outside its return value;
- ``Claim.won`` of a batched claim is known only once ``run`` has returned.

Reads that need no transaction (``GET`` routes, replays) use ``UnitRunner.read`` with a
``Reading``: the same repositories, their reading half only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from payhub.domain.payment import Payment, Refund
from payhub.errors import PayhubError

T = TypeVar("T")


class LostRace(PayhubError):
    """A unit found a row changed under it by another hub process; the runner runs it again.

    Raised when a guarded update (``UPDATE … WHERE status = <seen>``) touches no row. The
    rerun reads the row afresh and decides again, so the effect still happens at most once.
    """


@dataclass(slots=True)  # not frozen: a frozen dataclass costs four times as much to build
class AuditEntry:
    """One line of the hash-chained audit trail, before the chain gives it a number."""

    at: datetime
    actor: str
    action: str
    payment_id: str | None
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]


@dataclass
class NonceClaim:
    """A request nonce claimed inside the unit that carries the request's effect.

    ``decided`` turns true once a committed transaction has settled the claim (won or
    lost); the request's pipeline claims an undecided nonce on its own, so every signed
    request still uses up its nonce even when its use case stopped early.
    """

    keyid: str
    nonce: str
    expires_at: datetime
    decided: bool = False


@dataclass(slots=True)
class IdempotencyRecord:
    """What an ``Idempotency-Key`` stands for: one request (by fingerprint), one resource."""

    portal_id: str
    key: str
    scope: str
    fingerprint: str
    resource_id: str
    created_at: datetime


@dataclass(slots=True)
class NewPayment:
    """A payment to store, with what the hub keeps about it but never shows the portal."""

    payment: Payment
    payer_name: str
    payer_id_number: str | None
    payer_phone: str | None
    return_url: str
    next_query_at: datetime | None = None
    """When recovery first asks the bank about it (``payhub.recovery.schedule``)."""


@dataclass(slots=True)
class DueQuery:
    """A payment claimed by a recovery worker, and its claim token.

    ``attempt`` counts the claims so far and is the token: the worker's later
    ``schedule_query`` applies only while the row still has it, so a worker whose lease
    ran out never overwrites its successor's schedule.
    """

    payment: Payment
    attempt: int


@dataclass(slots=True)
class DueRefund:
    """A pending refund claimed by a recovery worker, with its payment and claim token
    (``attempt``, as for :class:`DueQuery`)."""

    refund: Refund
    payment: Payment
    attempt: int


@dataclass(frozen=True, slots=True)
class PendingRefund:
    """A refund still waiting for its bank's word, as the operator's list shows it."""

    refund: Refund
    bank: str
    portal_id: str
    asked_again_at: datetime | None
    """When recovery next asks the bank; ``None``: it will not (finance staff settle it)."""


class Claim(Protocol):
    """A unique row a unit asked for; whether it got it is known after the commit."""

    @property
    def won(self) -> bool: ...


class PaymentReader(Protocol):
    async def get(self, payment_id: str, *, portal_id: str | None = None) -> Payment | None:
        """The payment, only if it belongs to ``portal_id`` when one is given."""
        ...

    async def for_dossier(self, portal_id: str, dossier_code: str) -> list[Payment]:
        """A dossier's payments, oldest first."""
        ...


class PaymentRepository(PaymentReader, Protocol):
    async def by_reference(self, bank: str, bank_reference: str) -> Payment | None:
        """The payment a bank's confirmation names."""
        ...

    async def others_succeeded_for_dossier(
        self, portal_id: str, dossier_code: str, *, besides: str
    ) -> list[Payment]:
        """A dossier's succeeded payments other than ``besides`` (the overpaid check)."""
        ...

    async def get_for_refund(self, payment_id: str, *, portal_id: str) -> Payment | None:
        """The payment, held against concurrent refunds until the unit commits."""
        ...

    async def change_status(self, seen: Payment, changed: Payment, *, at: datetime) -> bool:
        """Store ``changed`` only if the row still has ``seen.status``; False otherwise."""
        ...

    async def add_refunded(self, payment_id: str, amount: int, at: datetime) -> None:
        """Raise the payment's refunded amount."""
        ...

    async def claim_due_queries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueQuery]:
        """Payments whose next bank query is due, each moved to ``lease_until`` (the claim).

        Across hub processes a payment is claimed by one worker at a time (PostgreSQL:
        ``FOR UPDATE SKIP LOCKED``; SQLite: the write lock), oldest due first.
        """
        ...

    async def schedule_query(self, payment_id: str, attempt: int, at: datetime | None) -> bool:
        """Set the next query (``None``: no more) if the claim ``attempt`` still holds."""
        ...


class IdempotencyReader(Protocol):
    async def get(self, portal_id: str, key: str) -> IdempotencyRecord | None: ...


class IdempotencyRepository(IdempotencyReader, Protocol):
    def claim(
        self,
        record: IdempotencyRecord,
        *,
        creates: NewPayment,
        audit: Sequence[AuditEntry],
        after: Claim | None = None,
    ) -> Claim:
        """Take the key, batched; if taken, the payment and audit entries are stored too.

        With ``after``, the key is tried only if that claim (the request's nonce) is won.
        """
        ...

    async def claim_now(self, record: IdempotencyRecord) -> bool:
        """Take the key at once; False if it is already taken."""
        ...


class RefundReader(Protocol):
    async def get(self, refund_id: str) -> Refund | None: ...

    async def pending(self, limit: int) -> list[PendingRefund]:
        """Refunds still pending, oldest first."""
        ...


class RefundRepository(RefundReader, Protocol):
    async def committed_amount(self, payment_id: str) -> int:
        """What pending and succeeded refunds of the payment add up to."""
        ...

    async def add(self, refund: Refund, *, portal_id: str, query_at: datetime) -> None:
        """Store a pending refund; recovery asks its bank at ``query_at`` if still pending."""
        ...

    async def settle(
        self,
        refund_id: str,
        *,
        status: str,
        bank_refund_id: str | None,
        failure_code: str | None,
        at: datetime,
    ) -> bool:
        """Settle a pending refund (off the schedule); False if it was settled meanwhile."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DueRefund]:
        """Pending refunds whose bank query is due, each moved to ``lease_until`` (the
        claim), oldest due first; one worker at a time, as ``claim_due_queries``."""
        ...

    async def schedule(self, refund_id: str, attempt: int, at: datetime | None) -> bool:
        """Set the next query (``None``: no more) if the claim ``attempt`` still holds."""
        ...


class EventReader(Protocol):
    async def position(self, portal_id: str, event_id: str) -> int | None:
        """Where the portal's event ``event_id`` stands in its feed, if it is the portal's."""
        ...

    async def page(self, portal_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        """The portal's events after ``after``, in commit order, as the portal sees them."""
        ...


class NonceRepository(Protocol):
    def claim(self, claim: NonceClaim) -> Claim:
        """Use up a request nonce, batched with the rest of the unit."""
        ...


class Reading(Protocol):
    """The reading half of the repositories, outside any write transaction."""

    @property
    def payments(self) -> PaymentReader: ...

    @property
    def idempotency_keys(self) -> IdempotencyReader: ...

    @property
    def refunds(self) -> RefundReader: ...

    @property
    def events(self) -> EventReader: ...


class UnitOfWork(Protocol):
    """What a unit may use: repositories, the audit trail and the outbox."""

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def idempotency_keys(self) -> IdempotencyRepository: ...

    @property
    def refunds(self) -> RefundRepository: ...

    @property
    def events(self) -> EventReader: ...

    @property
    def nonces(self) -> NonceRepository: ...

    def now(self) -> datetime:
        """The hub's clock."""
        ...

    def audit_entry(
        self,
        *,
        actor: str,
        action: str,
        payment_id: str | None = None,
        from_status: str | None = None,
        to_status: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """An entry to hand to a claim: written only if the claim is won."""
        ...

    def audit(
        self,
        *,
        actor: str,
        action: str,
        payment_id: str | None = None,
        from_status: str | None = None,
        to_status: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an entry to the audit trail (written if the unit returns)."""
        ...

    def emit(
        self, *, portal_id: str, type: str, payment_id: str | None, data: dict[str, Any]
    ) -> str:
        """Put a portal event into the outbox (written if the unit returns); its id."""
        ...


class UnitRunner(Protocol):
    """Runs units of work durably (the ledger) and read-only queries."""

    async def run(self, unit: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run ``unit``; returns once its effects are committed."""
        ...

    async def read(self, query: Callable[[Reading], Awaitable[T]]) -> T:
        """Run a read-only ``query`` on its own connection."""
        ...
