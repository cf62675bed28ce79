"""Recovery against the in-memory unit of work: the schedule, creating ``unknown``
payments, and every answer a bank query can give (no I/O, a fake clock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from payhub.api.schemas import parse_payment_request
from payhub.connectors.port import Confirmation, ConfirmationStatus, OrderRequest, PlacedOrder
from payhub.domain.clock import FakeClock
from payhub.domain.states import PaymentStatus
from payhub.errors import BankAnswerInvalid, BankUnavailable, ConfigError, ProblemError
from payhub.recovery.schedule import RecoveryPolicy
from payhub.recovery.worker import RecoveryWorker
from payhub.service.payments import PaymentService, order_may_exist
from payhub.service.recovery import Recovery, Settled
from payhub.service.routing import Router
from payhub.settings import parse_settings
from tests.factories import payment_body, settings_document
from tests.fakes import FakeBank, FakeLedger

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
POLICY = RecoveryPolicy()


# -- the schedule ---------------------------------------------------------------------------


def test_queries_back_off_10s_30s_1min_5min_15min_then_hourly() -> None:
    waits = [POLICY.delay(attempt).total_seconds() for attempt in range(1, 10)]
    assert waits == [10, 30, 60, 300, 900, 3600, 3600, 3600, 3600]


def test_an_unknown_payment_is_asked_about_soon_a_pending_one_once_it_is_late() -> None:
    expires = T0 + timedelta(minutes=15)
    assert POLICY.first_query(created_at=T0, expires_at=expires, unknown=True) == T0 + timedelta(
        seconds=10
    )
    assert POLICY.first_query(created_at=T0, expires_at=expires, unknown=False) == T0 + timedelta(
        seconds=120
    )
    soon = T0 + timedelta(seconds=60)
    assert POLICY.first_query(created_at=T0, expires_at=soon, unknown=False) == soon


def test_an_open_payment_is_never_scheduled_past_its_expiry() -> None:
    expires = T0 + timedelta(minutes=15)
    now = T0 + timedelta(minutes=14)
    assert POLICY.next_query(now=now, attempt=5, expires_at=expires, still_open=True) == expires
    assert POLICY.next_query(
        now=now, attempt=1, expires_at=expires, still_open=True
    ) == now + timedelta(seconds=10)


def test_an_expired_payment_is_asked_about_within_the_late_window_only() -> None:
    expires = T0
    inside = POLICY.next_query(now=T0, attempt=3, expires_at=expires, still_open=False)
    assert inside == T0 + timedelta(seconds=60)
    late = T0 + timedelta(seconds=3000)
    assert POLICY.next_query(now=late, attempt=6, expires_at=expires, still_open=False) is None


# -- which failures leave a payment unknown -------------------------------------------------


def unavailable(cause: BaseException | None) -> BankUnavailable:
    try:
        try:
            if cause is not None:
                raise cause
            raise BankUnavailable("HTTP 503")
        except BankUnavailable:
            raise
        except BaseException as exc:
            raise BankUnavailable("transport") from exc
    except BankUnavailable as raised:
        return raised


def connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, False, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))


@pytest.mark.parametrize(
    ("cause", "may_exist"),
    [
        (TimeoutError(), True),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "reset by peer"), True),
        (connector_error(), False),
        (aiohttp.ConnectionTimeoutError(), False),
        (None, False),
    ],
)
def test_only_a_request_that_was_sent_may_have_left_an_order(
    cause: BaseException | None, may_exist: bool
) -> None:
    assert order_may_exist(unavailable(cause)) is may_exist


# -- the use cases ---------------------------------------------------------------------------

Answer = Confirmation | None | Exception


class QueriedBank(FakeBank):
    """A remote bank whose order placing and status queries a test scripts."""

    def __init__(self) -> None:
        super().__init__("fake")
        self.place_error: BankUnavailable | None = None
        self.answer: Callable[[str], Answer] = lambda reference: None
        self.queries: list[str] = []

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        if self.place_error is not None:
            raise self.place_error
        return await super().place_order(order)

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        self.queries.append(bank_reference)
        answer = self.answer(bank_reference)
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Desk:
    clock: FakeClock
    ledger: FakeLedger
    payments: PaymentService
    bank: QueriedBank
    worker: RecoveryWorker

    async def create(self, dossier: str = "D-1", **overrides: Any) -> str:
        request = parse_payment_request(
            payment_body(dossier, bank="fake", **overrides), known_banks={"fake"}
        )
        created = await self.payments.create("portal-a", f"key-{dossier}", request)
        return created.payment.id

    def status(self, payment_id: str) -> PaymentStatus:
        return self.ledger.tables.payments[payment_id].status

    def reference(self, payment_id: str) -> str:
        return self.ledger.tables.payments[payment_id].bank_reference

    def next_query(self, payment_id: str) -> datetime | None:
        return self.ledger.tables.query_schedule[payment_id][0]

    def earliest_due(self) -> datetime | None:
        """The earliest scheduled query, the schedule of unclaimed payments included."""
        times = [
            self.ledger.tables.query_schedule.get(pid, (payer.next_query_at, 0))[0]
            for pid, payer in self.ledger.tables.payers.items()
        ]
        return min((t for t in times if t is not None), default=None)

    def events(self) -> list[str]:
        return [event["type"] for event in self.ledger.tables.events]

    async def at(self, seconds: float) -> int:
        """Move the clock to ``seconds`` after the start and run every due query."""
        self.clock.now = T0 + timedelta(seconds=seconds)
        return await self.worker.recover_all_due()


@pytest.fixture(name="desk")
def _desk() -> Desk:
    clock = FakeClock(T0)
    ledger = FakeLedger(clock)
    bank = QueriedBank()
    connectors: dict[str, Any] = {"fake": bank}
    payments = PaymentService(
        ledger=ledger,
        connectors=connectors,
        router=Router(connectors, "fake", clock),
        clock=clock,
        recovery=POLICY,
    )
    worker = RecoveryWorker(Recovery(ledger, POLICY), connectors, clock=clock)
    return Desk(clock, ledger, payments, bank, worker)


def paid(reference: str, amount: int = 2550000, status: str = "succeeded") -> Confirmation:
    return Confirmation(
        bank_reference=reference,
        amount=amount,
        status=ConfirmationStatus(status),
        bank_transaction_id="T9",
        failure_code="24" if status == "failed" else None,
    )


async def test_a_timeout_after_sending_stores_the_payment_unknown(desk: Desk) -> None:
    desk.bank.place_error = unavailable(TimeoutError())
    payment_id = await desk.create()
    payment = desk.ledger.tables.payments[payment_id]
    assert payment.status is PaymentStatus.UNKNOWN
    assert payment.payment_url is None
    assert desk.ledger.tables.payers[payment_id].next_query_at == T0 + timedelta(seconds=10)
    assert desk.ledger.tables.audit[-1].to_status == "unknown"


async def test_a_refused_order_answers_503_and_stores_nothing(desk: Desk) -> None:
    desk.bank.place_error = unavailable(connector_error())
    with pytest.raises(ProblemError) as info:
        await desk.create()
    assert info.value.code == "bank_unavailable"
    assert desk.ledger.tables.payments == {}


async def test_unknown_is_settled_by_the_first_query(desk: Desk) -> None:
    desk.bank.place_error = unavailable(TimeoutError())
    payment_id = await desk.create()
    desk.bank.answer = paid
    assert await desk.at(9) == 0
    assert await desk.at(10) == 1
    assert desk.status(payment_id) is PaymentStatus.SUCCEEDED
    assert desk.events() == ["payment.succeeded"]
    entry = desk.ledger.tables.audit[-1]
    assert (entry.actor, entry.from_status, entry.detail["via"]) == ("recovery", "unknown", "query")
    assert desk.next_query(payment_id) is None
    assert desk.worker.counts[Settled.SUCCEEDED] == 1


async def test_a_failure_answered_by_the_query_fails_the_payment(desk: Desk) -> None:
    payment_id = await desk.create()
    desk.bank.answer = lambda reference: paid(reference, status="failed")
    await desk.at(120)
    assert desk.status(payment_id) is PaymentStatus.FAILED
    assert desk.ledger.tables.payments[payment_id].failure_code == "24"
    assert desk.events() == ["payment.failed"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda reference: paid(reference, status="pending"),
        lambda reference: BankAnswerInvalid("MoMo refused query: 41 request rejected"),
        lambda reference: BankUnavailable("MoMo query: HTTP 503"),
        lambda reference: None,
    ],
    ids=["not-final", "api-request-code", "bank-down", "order-not-known"],
)
async def test_an_answer_that_decides_nothing_changes_nothing_and_asks_again_later(
    desk: Desk, answer: Callable[[str], Answer]
) -> None:
    payment_id = await desk.create()
    desk.bank.answer = answer
    audited = len(desk.ledger.tables.audit)
    assert await desk.at(120) == 1
    assert desk.status(payment_id) is PaymentStatus.PENDING
    assert desk.next_query(payment_id) == T0 + timedelta(seconds=130)
    assert await desk.at(129) == 0
    assert await desk.at(130) == 1
    assert desk.next_query(payment_id) == T0 + timedelta(seconds=160)
    assert desk.status(payment_id) is PaymentStatus.PENDING
    assert len(desk.ledger.tables.audit) == audited
    assert desk.events() == []
    assert len(desk.bank.queries) == 2


async def test_an_unpaid_payment_expires_at_expires_at_with_its_event(desk: Desk) -> None:
    payment_id = await desk.create(expires_in=300)
    desk.bank.answer = lambda reference: paid(reference, status="pending")
    for second in range(0, 300, 7):
        await desk.at(second)
        assert desk.status(payment_id) is PaymentStatus.PENDING
    await desk.at(300)
    assert desk.status(payment_id) is PaymentStatus.EXPIRED
    assert desk.events() == ["payment.expired"]
    assert desk.ledger.tables.events[0]["data"]["status"] == "expired"
    assert desk.worker.counts[Settled.EXPIRED] == 1


async def test_a_late_success_after_expiry_is_applied_and_flagged(desk: Desk) -> None:
    payment_id = await desk.create(expires_in=300)
    await desk.at(300)
    assert desk.status(payment_id) is PaymentStatus.EXPIRED
    desk.bank.answer = paid
    await desk.at(310)
    assert desk.status(payment_id) is PaymentStatus.SUCCEEDED
    assert desk.events() == ["payment.expired", "payment.succeeded"]
    entry = desk.ledger.tables.audit[-1]
    assert (entry.from_status, entry.to_status) == ("expired", "succeeded")
    assert entry.detail["late"] is True
    assert desk.worker.counts[Settled.LATE_SUCCESS] == 1


async def test_a_late_success_confirmed_by_the_bank_is_flagged_too(desk: Desk) -> None:
    payment_id = await desk.create(expires_in=300)
    await desk.at(300)
    outcome = await desk.payments.confirm("fake", paid(desk.reference(payment_id)))
    assert outcome.value == "applied"
    assert desk.status(payment_id) is PaymentStatus.SUCCEEDED
    assert desk.ledger.tables.audit[-1].detail["late"] is True


async def test_a_payment_confirmed_by_its_bank_leaves_the_schedule(
    desk: Desk,
) -> None:
    payment_id = await desk.create()
    await desk.payments.confirm("fake", paid(desk.reference(payment_id)))
    assert await desk.at(120) == 0
    assert desk.bank.queries == []
    assert desk.next_query(payment_id) is None
    assert await desk.at(86_400) == 0


async def test_a_payment_confirmed_while_claimed_is_left_as_it_is(desk: Desk) -> None:
    payment_id = await desk.create()
    desk.clock.now = T0 + timedelta(seconds=120)
    (due,) = await desk.worker.recovery.claim_due(desk.clock())
    await desk.payments.confirm("fake", paid(desk.reference(payment_id)))
    audited = len(desk.ledger.tables.audit)
    assert await desk.worker.recovery.settle(due, None) is Settled.DONE
    assert desk.status(payment_id) is PaymentStatus.SUCCEEDED
    assert len(desk.ledger.tables.audit) == audited
    assert desk.next_query(payment_id) is None


async def test_an_amount_that_differs_is_audited_and_never_applied(desk: Desk) -> None:
    payment_id = await desk.create()
    desk.bank.answer = lambda reference: paid(reference, amount=1)
    await desk.at(120)
    assert desk.status(payment_id) is PaymentStatus.PENDING
    assert desk.ledger.tables.audit[-1].action == "confirmation.amount_mismatch"


async def test_a_worker_whose_lease_ran_out_does_not_overwrite_its_successor(
    desk: Desk,
) -> None:
    payment_id = await desk.create()
    desk.clock.now = T0 + timedelta(seconds=120)
    first = await desk.worker.recovery.claim_due(desk.clock())
    desk.clock.now = T0 + timedelta(seconds=181)  # the first claim's 60 s lease is over
    second = await desk.worker.recovery.claim_due(desk.clock())
    assert [d.payment.id for d in first] == [d.payment.id for d in second] == [payment_id]
    assert await desk.worker.recovery.settle(first[0], None) is Settled.STALE
    assert await desk.worker.recovery.settle(second[0], None) is Settled.RESCHEDULED
    assert desk.next_query(payment_id) == desk.clock() + timedelta(seconds=30)


async def test_a_simulated_day_settles_every_payment(desk: Desk) -> None:
    """A day of 30 payments in fake time: some paid late, some never, some unknown."""
    ids = []
    for n in range(30):
        if n % 5 == 0:
            desk.bank.place_error = unavailable(TimeoutError())
        ids.append(await desk.create(f"D-{n}", expires_in=900))
        desk.bank.place_error = None
    paid_late = {desk.reference(pid) for pid in ids[::3]}
    payable_after = T0 + timedelta(seconds=200)

    def answer(reference: str) -> Answer:
        if reference in paid_late and desk.clock() >= payable_after:
            return paid(reference)
        return paid(reference, status="pending")

    desk.bank.answer = answer
    day_end = T0 + timedelta(days=1)
    rounds = 0
    while (due := desk.earliest_due()) is not None and due <= day_end:
        desk.clock.now = due  # straight to the next due query: a day in a few rounds
        rounds += await desk.worker.recover_all_due()
    desk.clock.now = day_end
    assert await desk.worker.recover_all_due() == 0
    assert rounds > 30
    statuses = {desk.status(pid) for pid in ids}
    assert statuses <= {PaymentStatus.SUCCEEDED, PaymentStatus.EXPIRED}
    assert {pid for pid in ids if desk.status(pid) is PaymentStatus.SUCCEEDED} == set(ids[::3])
    assert all(desk.next_query(pid) is None for pid in ids)
    # bounded effort: the schedule backs off instead of asking every minute
    assert len(desk.bank.queries) < 30 * 12


# -- [recovery] in payhub.toml --------------------------------------------------------------


def test_recovery_settings_take_their_defaults_and_values(tmp_path: Path) -> None:
    doc = settings_document(tmp_path, "sqlite:///payhub.db", 18080)[0]
    assert parse_settings(doc, tmp_path / "payhub.toml").recovery == RecoveryPolicy()
    doc["recovery"] = {"pending_after": 30, "query_delays": [1, 2.5], "enabled": False}
    policy = parse_settings(doc, tmp_path / "payhub.toml").recovery
    assert (policy.pending_after, policy.query_delays, policy.enabled) == (30.0, (1.0, 2.5), False)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"pending_after": -1}, "recovery.pending_after"),
        ({"pending_after": "2m"}, "recovery.pending_after"),
        ({"query_delays": []}, "recovery.query_delays"),
        ({"query_delays": [10, "x"]}, "recovery.query_delays"),
        ({"lease": 0.5}, "recovery.lease"),
        ({"batch": 0}, "recovery.batch"),
        ({"enabled": "yes"}, "recovery.enabled"),
        ({"late_window": True}, "recovery.late_window"),
        ({"schedule": []}, "schedule"),
    ],
)
def test_a_bad_recovery_value_is_one_clear_line(
    tmp_path: Path, table: dict[str, Any], named: str
) -> None:
    doc = settings_document(tmp_path, "sqlite:///payhub.db", 18080)[0]
    doc["recovery"] = table
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, tmp_path / "payhub.toml")
    assert "\n" not in str(info.value)
    assert named in str(info.value)
