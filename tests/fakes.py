"""Hand-written fakes of the hub's ports, for tests that need no real bank."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from payhub.connectors.port import (
    BankAnswer,
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    InboundMessage,
    OrderRequest,
    PlacedOrder,
    RefundRequest,
    RefundResult,
)
from payhub.domain.clock import Clock, rfc3339
from payhub.domain.payment import Payment, Refund
from payhub.domain.states import PaymentStatus
from payhub.errors import BankUnavailable, ConfirmationMalformed, ConfirmationSignatureInvalid
from payhub.service.unit_of_work import (
    AuditEntry,
    Claim,
    DueQuery,
    DueRefund,
    IdempotencyRecord,
    LostRace,
    NewPayment,
    NonceClaim,
    PendingRefund,
    Reading,
    UnitOfWork,
)

T = TypeVar("T")


class FakeBank(BankConnector):
    """A bank that takes orders in memory and reads confirmations as signed JSON."""

    protocol = "fake"
    max_amount = 50_000_000

    def __init__(
        self, bank: str = "fake", options: Mapping[str, Any] | None = None, context: Any = None
    ) -> None:
        super().__init__(bank, options or {}, context)
        self.orders: list[OrderRequest] = []
        self.down = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        return []

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        if self.down:
            raise BankUnavailable(f"{self.bank} is down")
        self.orders.append(order)
        return PlacedOrder(payment_url=f"https://{self.bank}.example/pay/{order.bank_reference}")

    def parse_confirmation(self, message: InboundMessage) -> Sequence[Confirmation]:
        try:
            data = json.loads(message.body)
        except ValueError as exc:
            raise ConfirmationMalformed("not JSON") from exc
        if data.get("signature") != "good":
            raise ConfirmationSignatureInvalid("bad signature")
        return (confirmation(data["reference"], data["amount"], data.get("status", "succeeded")),)

    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        return BankAnswer(200, outcome.value.encode(), "text/plain")

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        return None

    async def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(succeeded=True, bank_refund_id="r1")


def confirmation(
    reference: str, amount: int, status: str = "succeeded", code: str | None = None
) -> Confirmation:
    return Confirmation(
        bank_reference=reference,
        amount=amount,
        status=ConfirmationStatus(status),
        bank_transaction_id="T1",
        failure_code=code,
    )


# --- an in-memory unit of work -------------------------------------------------------------


@dataclass
class MemoryTables:
    """What the fake ledger stores: the same facts as the database, as plain Python."""

    payments: dict[str, Payment] = field(default_factory=dict)
    payers: dict[str, NewPayment] = field(default_factory=dict)
    idempotency_keys: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    nonces: set[tuple[str, str]] = field(default_factory=set)
    audit: list[AuditEntry] = field(default_factory=list)
    query_schedule: dict[str, tuple[datetime | None, int]] = field(default_factory=dict)
    """Recovery: payment id -> (next query, claims so far), once a worker touched it."""
    refund_schedule: dict[str, tuple[datetime | None, int]] = field(default_factory=dict)
    """Refund recovery: refund id -> (next query, claims so far)."""

    def copy(self) -> MemoryTables:
        return copy.deepcopy(self)


@dataclass(eq=False)
class MemoryClaim:
    table: str
    key: tuple[str, str]
    value: Any
    creates: NewPayment | None = None
    audit: Sequence[AuditEntry] = ()
    after: MemoryClaim | None = None
    won: bool = False


class FakePayments:
    def __init__(self, tables: MemoryTables, ledger: FakeLedger) -> None:
        self.tables = tables
        self.ledger = ledger

    async def get(self, payment_id: str, *, portal_id: str | None = None) -> Payment | None:
        payment = self.tables.payments.get(payment_id)
        if payment is None or (portal_id is not None and payment.portal_id != portal_id):
            return None
        return payment

    async def for_dossier(self, portal_id: str, dossier_code: str) -> list[Payment]:
        found = [
            p
            for p in self.tables.payments.values()
            if p.portal_id == portal_id and p.dossier["code"] == dossier_code
        ]
        return sorted(found, key=lambda p: (p.created_at, p.id))

    async def by_reference(self, bank: str, bank_reference: str) -> Payment | None:
        for payment in self.tables.payments.values():
            if payment.bank == bank and payment.bank_reference == bank_reference:
                return payment
        return None

    async def others_succeeded_for_dossier(
        self, portal_id: str, dossier_code: str, *, besides: str
    ) -> list[Payment]:
        found = await self.for_dossier(portal_id, dossier_code)
        return [p for p in found if p.status is PaymentStatus.SUCCEEDED and p.id != besides]

    async def get_for_refund(self, payment_id: str, *, portal_id: str) -> Payment | None:
        return await self.get(payment_id, portal_id=portal_id)

    async def change_status(self, seen: Payment, changed: Payment, *, at: datetime) -> bool:
        race, self.ledger.race_once = self.ledger.race_once, None
        if race is not None:  # another hub process commits between our read and our write
            race(self.ledger.tables)
            race(self.tables)
        stored = self.tables.payments.get(seen.id)
        if stored is None or stored.status is not seen.status:
            return False
        self.tables.payments[seen.id] = changed
        if changed.status not in (
            PaymentStatus.PENDING,
            PaymentStatus.UNKNOWN,
            PaymentStatus.EXPIRED,
        ):  # settled: off the recovery schedule, as the SQL repository does
            self.tables.query_schedule[seen.id] = (None, self._schedule(seen.id)[1])
        return True

    async def add_refunded(self, payment_id: str, amount: int, at: datetime) -> None:
        stored = self.tables.payments[payment_id]
        self.tables.payments[payment_id] = replace(
            stored, refunded_amount=stored.refunded_amount + amount
        )

    def _schedule(self, payment_id: str) -> tuple[datetime | None, int]:
        payer = self.tables.payers.get(payment_id)
        first = payer.next_query_at if payer is not None else None
        return self.tables.query_schedule.get(payment_id, (first, 0))

    async def claim_due_queries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueQuery]:
        due = []
        for payment_id, payment in self.tables.payments.items():
            next_at, attempts = self._schedule(payment_id)
            if next_at is not None and next_at <= now:
                due.append((next_at, payment_id, payment, attempts))
        due.sort(key=lambda row: (row[0], row[1]))
        claimed = []
        for _, payment_id, payment, attempts in due[:limit]:
            self.tables.query_schedule[payment_id] = (lease_until, attempts + 1)
            claimed.append(DueQuery(payment, attempts + 1))
        return claimed

    async def schedule_query(self, payment_id: str, attempt: int, at: datetime | None) -> bool:
        _, attempts = self._schedule(payment_id)
        if attempts != attempt:
            return False
        self.tables.query_schedule[payment_id] = (at, attempts)
        return True


class FakeIdempotencyKeys:
    def __init__(self, tables: MemoryTables, claims: list[MemoryClaim]) -> None:
        self.tables = tables
        self.claims = claims

    async def get(self, portal_id: str, key: str) -> IdempotencyRecord | None:
        return self.tables.idempotency_keys.get((portal_id, key))

    def claim(
        self,
        record: IdempotencyRecord,
        *,
        creates: NewPayment,
        audit: Sequence[AuditEntry],
        after: Claim | None = None,
    ) -> Claim:
        assert after is None or isinstance(after, MemoryClaim)
        claim = MemoryClaim(
            "idempotency_keys", (record.portal_id, record.key), record, creates, audit, after
        )
        self.claims.append(claim)
        return claim

    async def claim_now(self, record: IdempotencyRecord) -> bool:
        slot = (record.portal_id, record.key)
        if slot in self.tables.idempotency_keys:
            return False
        self.tables.idempotency_keys[slot] = record
        return True


class FakeRefunds:
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    async def get(self, refund_id: str) -> Refund | None:
        return self.tables.refunds.get(refund_id)

    async def pending(self, limit: int) -> list[PendingRefund]:
        waiting = sorted(
            (r for r in self.tables.refunds.values() if r.status == "pending"),
            key=lambda r: (r.created_at, r.id),
        )
        return [
            PendingRefund(
                refund,
                self.tables.payments[refund.payment_id].bank,
                self.tables.payments[refund.payment_id].portal_id,
                self.tables.refund_schedule.get(refund.id, (None, 0))[0],
            )
            for refund in waiting[:limit]
        ]

    async def committed_amount(self, payment_id: str) -> int:
        return sum(
            r.amount
            for r in self.tables.refunds.values()
            if r.payment_id == payment_id and r.status in ("pending", "succeeded")
        )

    async def add(self, refund: Refund, *, portal_id: str, query_at: datetime) -> None:
        assert refund.id not in self.tables.refunds, "duplicate primary key"
        self.tables.refunds[refund.id] = refund
        self.tables.refund_schedule[refund.id] = (query_at, 0)

    async def settle(
        self,
        refund_id: str,
        *,
        status: str,
        bank_refund_id: str | None,
        failure_code: str | None,
        at: datetime,
    ) -> bool:
        stored = self.tables.refunds.get(refund_id)
        if stored is None or stored.status != "pending":
            return False
        self.tables.refunds[refund_id] = replace(stored, status=status)
        _, attempts = self.tables.refund_schedule.get(refund_id, (None, 0))
        self.tables.refund_schedule[refund_id] = (None, attempts)
        return True

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[DueRefund]:
        due = sorted(
            (next_at, refund_id, attempts)
            for refund_id, (next_at, attempts) in self.tables.refund_schedule.items()
            if next_at is not None and next_at <= now
        )
        claimed = []
        for _, refund_id, attempts in due[:limit]:
            self.tables.refund_schedule[refund_id] = (lease_until, attempts + 1)
            refund = self.tables.refunds[refund_id]
            payment = self.tables.payments[refund.payment_id]
            claimed.append(DueRefund(refund, payment, attempts + 1))
        return claimed

    async def schedule(self, refund_id: str, attempt: int, at: datetime | None) -> bool:
        _, attempts = self.tables.refund_schedule.get(refund_id, (None, 0))
        if attempts != attempt:
            return False
        self.tables.refund_schedule[refund_id] = (at, attempts)
        return True


class FakeEvents:
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    async def position(self, portal_id: str, event_id: str) -> int | None:
        for event in self.tables.events:
            if event["id"] == event_id and event["portal_id"] == portal_id:
                return int(event["seq"])
        return None

    async def page(self, portal_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        found = [e for e in self.tables.events if e["portal_id"] == portal_id and e["seq"] > after]
        return [
            {"id": e["id"], "type": e["type"], "timestamp": rfc3339(e["at"]), "data": e["data"]}
            for e in found[:limit]
        ]


class FakeNonces:
    def __init__(self, claims: list[MemoryClaim]) -> None:
        self.claims = claims

    def claim(self, claim: NonceClaim) -> Claim:
        memory = MemoryClaim("nonces", (claim.keyid, claim.nonce), claim)
        self.claims.append(memory)
        return memory


class FakeUnitOfWork:
    """One unit's view of the fake ledger: a private copy of the tables until it returns."""

    def __init__(self, tables: MemoryTables, ledger: FakeLedger) -> None:
        self.tables = tables
        self.clock = ledger.clock
        self.claims: list[MemoryClaim] = []
        self.payments = FakePayments(tables, ledger)
        self.idempotency_keys = FakeIdempotencyKeys(tables, self.claims)
        self.refunds = FakeRefunds(tables)
        self.events = FakeEvents(tables)
        self.nonces = FakeNonces(self.claims)

    def now(self) -> datetime:
        return self.clock()

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
        return AuditEntry(
            self.clock(), actor, action, payment_id, from_status, to_status, detail or {}
        )

    def audit(self, **entry: Any) -> None:
        self.tables.audit.append(self.audit_entry(**entry))

    def emit(
        self, *, portal_id: str, type: str, payment_id: str | None, data: dict[str, Any]
    ) -> str:
        event_id = f"evt_{len(self.tables.events) + 1:06d}"
        self.tables.events.append(
            {
                "seq": len(self.tables.events) + 1,
                "id": event_id,
                "portal_id": portal_id,
                "type": type,
                "payment_id": payment_id,
                "data": json.loads(json.dumps(data)),
                "at": self.clock(),
            }
        )
        return event_id

    def settle_claims(self) -> None:
        """Claims are decided at the end of the unit, in order, as the ledger's batch does."""
        for claim in self.claims:
            if claim.after is not None and not claim.after.won:
                continue
            if claim.table == "nonces":
                if claim.key in self.tables.nonces:
                    continue
                self.tables.nonces.add(claim.key)
            else:
                if claim.key in self.tables.idempotency_keys:
                    continue
                self.tables.idempotency_keys[claim.key] = claim.value
                if claim.creates is not None:
                    payment = claim.creates.payment
                    self.tables.payments[payment.id] = payment
                    self.tables.payers[payment.id] = claim.creates
                self.tables.audit.extend(claim.audit)
            claim.won = True


class FakeLedger:
    """The ``UnitRunner`` of unit tests: each unit commits alone or leaves no trace.

    A unit runs on a copy of the tables; the copy replaces them only if the unit returns,
    which is the rollback a savepoint gives the real ledger. ``LostRace`` reruns the
    unit, as the real ledger does. ``race_once`` lets a test commit a change "from another
    hub process" between a unit's read and its guarded update.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tables = MemoryTables()
        self.units = 0
        self.race_once: Callable[[MemoryTables], None] | None = None

    async def run(self, unit: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        for _ in range(5):
            working = self.tables.copy()
            work = FakeUnitOfWork(working, self)
            self.units += 1
            try:
                result = await unit(work)
            except LostRace:
                continue
            work.settle_claims()
            self.tables = working
            return result
        raise LostRace("lost five times")

    async def read(self, query: Callable[[Reading], Awaitable[T]]) -> T:
        return await query(FakeUnitOfWork(self.tables.copy(), self))
