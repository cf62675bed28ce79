"""The VNPay connector against the VNPay simulator, over real HTTP on port 0.

A tiny fake merchant stands in for the hub: it keeps a ledger of orders, reads IPNs with
the connector and answers them the way the hub would.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from banks.vnpay import wire
from banks.vnpay.connector import VnpayConnector
from banks.vnpay.simulator import create_simulator
from payhub.connectors.port import (
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
    RefundRequest,
)
from payhub.domain.clock import VIETNAM, FakeClock
from payhub.errors import (
    BankAnswerInvalid,
    BankUnavailable,
    ConfirmationMalformed,
    ConfirmationSignatureInvalid,
)

TMN_CODE = "PAYHUB01"
SECRET = "PAYHUBTESTSECRET0123456789ABCDEF"
START = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội
SIM_OPTIONS = {"tmn_code": TMN_CODE, "hash_secret": SECRET, "seed": 7, "fee_basis_points": 110}


@dataclass
class Merchant:
    """The hub's side of the IPN, reduced to a ledger: reference -> amount, paid or not."""

    orders: dict[str, int] = field(default_factory=dict)
    paid: set[str] = field(default_factory=set)
    queries: list[dict[str, str]] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)
    outcomes: list[ConfirmationOutcome] = field(default_factory=list)
    fail_next: int = 0
    """Answer this many IPNs with an error, to make the gateway retry."""
    slow_seconds: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    connector: VnpayConnector | None = None
    notify_url: str = ""
    return_url: str = ""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def outcome_for(self, message: InboundMessage) -> ConfirmationOutcome:
        assert self.connector is not None
        try:
            (confirmation,) = self.connector.parse_confirmation(message)
        except ConfirmationSignatureInvalid:
            return ConfirmationOutcome.SIGNATURE_INVALID
        except ConfirmationMalformed:
            return ConfirmationOutcome.MALFORMED
        self.confirmations.append(confirmation)
        if self.fail_next:
            self.fail_next -= 1
            return ConfirmationOutcome.ERROR
        expected = self.orders.get(confirmation.bank_reference)
        if expected is None:
            return ConfirmationOutcome.UNKNOWN_ORDER
        if confirmation.amount != expected:
            return ConfirmationOutcome.AMOUNT_MISMATCH
        if confirmation.bank_reference in self.paid:
            return ConfirmationOutcome.ALREADY_APPLIED
        if confirmation.status is not ConfirmationStatus.SUCCEEDED:
            return ConfirmationOutcome.IGNORED
        self.paid.add(confirmation.bank_reference)
        return ConfirmationOutcome.APPLIED

    async def ipn(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.slow_seconds:
                await asyncio.sleep(self.slow_seconds)
            query = dict(request.query)
            self.queries.append(query)
            outcome = self.outcome_for(InboundMessage("GET", query, dict(request.headers), b""))
            self.outcomes.append(outcome)
        finally:
            self.in_flight -= 1
        async with self.changed:
            self.changed.notify_all()
        assert self.connector is not None
        answer = self.connector.answer_confirmation(outcome)
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    async def returned(self, request: web.Request) -> web.Response:
        return web.Response(text="Payment result received")

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(condition)


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(name="merchant")
async def _merchant() -> AsyncIterator[Merchant]:
    merchant = Merchant()
    app = web.Application()
    app.router.add_get("/ipn", merchant.ipn)
    app.router.add_get("/return", merchant.returned)
    async with TestServer(app, port=0) as server:
        merchant.notify_url = str(server.make_url("/ipn"))
        merchant.return_url = str(server.make_url("/return?portal=demo"))
        yield merchant


@pytest.fixture(name="simulator")
async def _simulator(merchant: Merchant, clock: FakeClock) -> AsyncIterator[TestServer]:
    server = TestServer(
        create_simulator(SIM_OPTIONS, notify_url=merchant.notify_url, clock=clock), port=0
    )
    async with server:
        yield server


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _make_connector(
    base_url: str, merchant: Merchant, http: aiohttp.ClientSession, clock: FakeClock, **extra: Any
) -> VnpayConnector:
    options = {
        "tmn_code": TMN_CODE,
        "hash_secret": SECRET,
        "base_url": base_url,
        "timeout_seconds": 2,
        **extra,
    }
    context = ConnectorContext(http=http, clock=clock, notify_url=merchant.notify_url)
    return VnpayConnector("vnpay_main", options, context)


@pytest.fixture(name="connector")
def _connector(
    simulator: TestServer, merchant: Merchant, http: aiohttp.ClientSession, clock: FakeClock
) -> VnpayConnector:
    connector = _make_connector(str(simulator.make_url("/")), merchant, http, clock)
    merchant.connector = connector
    return connector


class Bank:
    """Drives the simulator's control API the way a test or the demo does."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http

    async def pay(self, status: int = 200, **body: Any) -> dict[str, Any]:
        async with self.http.post(self.server.make_url("/_sim/pay"), json=body) as response:
            assert response.status == status, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def faults(self, **knobs: Any) -> dict[str, Any]:
        async with self.http.put(self.server.make_url("/_sim/faults"), json=knobs) as response:
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def statement(self, day: str) -> bytes:
        url = self.server.make_url("/_sim/statement").with_query(date=day)
        async with self.http.get(url) as response:
            assert response.status == 200
            assert response.content_type == "text/csv"
            return await response.read()

    async def confirmations(self) -> list[dict[str, Any]]:
        async with self.http.get(self.server.make_url("/_sim/confirmations")) as response:
            result: list[dict[str, Any]] = await response.json()
            return result


@pytest.fixture(name="bank")
def _bank(simulator: TestServer, http: aiohttp.ClientSession) -> Bank:
    return Bank(simulator, http)


async def _place(
    connector: VnpayConnector,
    merchant: Merchant,
    clock: FakeClock,
    reference: str,
    amount: int = 25_500,
) -> str:
    merchant.orders[reference] = amount
    placed = await connector.place_order(
        OrderRequest(
            payment_id=f"pay_{reference}",
            bank_reference=reference,
            amount=amount,
            order_info=f"Thanh toán hồ sơ {reference}",
            return_url=merchant.return_url,
            created_at=clock(),
            expires_at=clock() + timedelta(minutes=15),
        )
    )
    assert placed.payment_url is not None
    return placed.payment_url


def _rsp_codes(report: dict[str, Any]) -> list[list[str | None]]:
    return [[a.get("RspCode") for a in c["answers"]] for c in report["confirmations"]]


# --- the happy path -----------------------------------------------------------------


async def test_paid_order_is_confirmed_to_the_merchant(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH001")

    report = await bank.pay(reference=url, outcome="success")

    assert _rsp_codes(report) == [["00"]]
    assert merchant.outcomes == [ConfirmationOutcome.APPLIED]
    [confirmation] = merchant.confirmations
    assert confirmation.status is ConfirmationStatus.SUCCEEDED
    assert (confirmation.bank_reference, confirmation.amount) == ("PH001", 25_500)
    assert confirmation.bank_transaction_id == report["payments"][0]["vnp_TransactionNo"]
    assert confirmation.paid_at == START
    assert set(merchant.queries[0]) == {
        "vnp_Amount",
        "vnp_BankCode",
        "vnp_BankTranNo",
        "vnp_CardType",
        "vnp_PayDate",
        "vnp_OrderInfo",
        "vnp_TransactionNo",
        "vnp_ResponseCode",
        "vnp_TransactionStatus",
        "vnp_TxnRef",
        "vnp_TmnCode",
        "vnp_SecureHash",
    }


async def test_return_url_is_signed_like_the_ipn(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH002")

    report = await bank.pay(reference=url, outcome="success")

    returned = urlsplit(report["return_url"])
    assert report["return_url"].startswith(merchant.return_url + "&")
    query = dict(parse_qsl(returned.query))
    assert query.pop("portal") == "demo"
    (confirmation,) = connector.parse_confirmation(InboundMessage("GET", query, {}, b""))
    assert confirmation.status is ConfirmationStatus.SUCCEEDED


async def test_bare_reference_works_once_the_gateway_has_seen_the_order(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    await bank.pay(status=404, reference="PH003", outcome="success")
    url = await _place(connector, merchant, clock, "PH003")
    await bank.pay(reference=url, outcome="abandon")

    report = await bank.pay(reference="PH003", outcome="success")

    assert _rsp_codes(report) == [["00"]]


async def test_a_second_success_is_refused(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH004")
    await bank.pay(reference=url, outcome="success")

    report = await bank.pay(status=409, reference="PH004", outcome="success")

    assert report["code"] == "02"


async def test_tampered_payment_url_is_refused(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH005")

    report = await bank.pay(
        status=400, reference=url.replace("vnp_Amount=2550000", "vnp_Amount=100")
    )

    assert report["code"] == "97"
    assert merchant.queries == []


@pytest.mark.parametrize(
    ("outcome", "failure_code"),
    [
        ("insufficient_funds", "51"),
        ("cancel", "24"),
        ("timeout", "11"),
        ("fraud_suspected", "07"),
    ],
)
async def test_declined_payments_are_failed_confirmations(
    connector: VnpayConnector,
    merchant: Merchant,
    clock: FakeClock,
    bank: Bank,
    outcome: str,
    failure_code: str,
) -> None:
    url = await _place(connector, merchant, clock, f"PHD{failure_code}")

    report = await bank.pay(reference=url, outcome=outcome)

    [confirmation] = merchant.confirmations
    assert confirmation.status is ConfirmationStatus.FAILED
    assert confirmation.failure_code == failure_code
    assert _rsp_codes(report) == [["02"]]
    assert merchant.paid == set()


async def test_payer_who_pays_twice_makes_two_transactions(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH006")

    report = await bank.pay(reference=url, outcome="pay_twice")

    numbers = {p["vnp_TransactionNo"] for p in report["payments"]}
    assert len(numbers) == 2
    assert merchant.outcomes == [
        ConfirmationOutcome.APPLIED,
        ConfirmationOutcome.ALREADY_APPLIED,
    ]
    lines = list(connector.read_statement(io.BytesIO(await bank.statement("2026-11-28"))))
    assert [line.bank_transaction_id for line in lines] == sorted(numbers)


async def test_late_payer_confirms_in_the_background(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH007")

    report = await bank.pay(status=202, reference=url, outcome="late", delay_seconds=0.05)

    assert report["outcome"] == "late"
    assert merchant.outcomes == []
    await merchant.wait_until(lambda: merchant.outcomes == [ConfirmationOutcome.APPLIED])


async def test_gateway_reported_amount_is_checked_by_the_merchant(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH008")

    report = await bank.pay(
        reference=url, outcome="success", amount=20_000, faults={"ipn_retries": 0}
    )

    assert merchant.confirmations[0].amount == 20_000
    assert _rsp_codes(report) == [["04"]]
    assert report["confirmations"][0]["retry_scheduled"] is False


# --- querydr and refund -------------------------------------------------------------


async def test_query_status_follows_the_order(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    created_at = clock()
    assert await connector.query_status("PH010", 25_500, created_at) is None

    url = await _place(connector, merchant, clock, "PH010")
    await bank.pay(reference=url, outcome="abandon")
    pending = await connector.query_status("PH010", 25_500, created_at)
    assert pending is not None
    assert pending.status is ConfirmationStatus.PENDING

    await bank.faults(lose_confirmation=1)
    report = await bank.pay(reference="PH010", outcome="success")
    assert report["confirmations"][0]["lost"] is True
    assert merchant.queries == []

    paid = await connector.query_status("PH010", 25_500, created_at)
    assert paid is not None
    assert paid.status is ConfirmationStatus.SUCCEEDED
    assert paid.amount == 25_500
    assert paid.bank_transaction_id == report["payments"][0]["vnp_TransactionNo"]
    assert paid.paid_at == START


async def test_query_status_of_a_cancelled_order_is_failed(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH011")
    await bank.pay(reference=url, outcome="cancel")

    failed = await connector.query_status("PH011", 25_500, clock())

    assert failed is not None
    assert failed.status is ConfirmationStatus.FAILED
    assert failed.failure_code == "02"


@pytest.mark.parametrize(
    "knobs", [{"error_rate": 1}, {"timeout_rate": 1, "hang_seconds": 5}, {"reset_rate": 1}]
)
async def test_unreachable_api_raises_bank_unavailable(
    simulator: TestServer,
    merchant: Merchant,
    http: aiohttp.ClientSession,
    clock: FakeClock,
    bank: Bank,
    knobs: dict[str, Any],
) -> None:
    connector = _make_connector(
        str(simulator.make_url("/")), merchant, http, clock, timeout_seconds=0.2
    )
    await bank.faults(**knobs)

    with pytest.raises(BankUnavailable):
        await connector.query_status("PH012", 25_500, clock())


async def test_latency_slows_the_api(
    connector: VnpayConnector, clock: FakeClock, bank: Bank
) -> None:
    await bank.faults(latency_ms=[50, 60])
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await connector.query_status("PH013", 25_500, clock()) is None
    assert loop.time() - started >= 0.05


async def test_answer_signed_with_another_secret_is_invalid(
    simulator: TestServer, merchant: Merchant, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    connector = _make_connector(
        str(simulator.make_url("/")), merchant, http, clock, hash_secret="not the secret"
    )

    with pytest.raises(BankAnswerInvalid):
        await connector.query_status("PH014", 25_500, clock())


async def test_api_refuses_bad_checksum_and_replayed_request_id(
    simulator: TestServer, http: aiohttp.ClientSession
) -> None:
    request = {
        "vnp_RequestId": "req-1",
        "vnp_Version": "2.1.0",
        "vnp_Command": "querydr",
        "vnp_TmnCode": TMN_CODE,
        "vnp_TxnRef": "PH015",
        "vnp_TransactionDate": "20261128100000",
        "vnp_CreateDate": "20261128100100",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_OrderInfo": "Truy van",
    }
    url = simulator.make_url(wire.API_PATH)

    async def call(body: dict[str, str]) -> str:
        async with http.post(url, json=body) as response:
            answer = await response.json()
        assert wire.verify_fields(answer, wire.QUERYDR_RESPONSE_FIELDS, SECRET)
        code: str = answer["vnp_ResponseCode"]
        return code

    signed = {**request, "vnp_SecureHash": wire.sign_fields(request, wire.QUERYDR_FIELDS, SECRET)}
    assert await call({**signed, "vnp_TxnRef": "PH999"}) == "97"
    assert await call(signed) == "91"
    assert await call(signed) == "94"


async def test_refunds_full_and_partial(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH020")
    report = await bank.pay(reference=url, outcome="success")
    transaction_no = report["payments"][0]["vnp_TransactionNo"]

    def refund(amount: int, bank_transaction_id: str | None = transaction_no) -> RefundRequest:
        return RefundRequest(
            refund_id=f"ref_{amount}",
            payment_bank_reference="PH020",
            bank_transaction_id=bank_transaction_id,
            amount=amount,
            payment_amount=25_500,
            paid_at=START,
            reason="Hoàn phí hồ sơ",
        )

    first = await connector.refund(refund(10_000))
    assert first.succeeded
    assert first.bank_refund_id not in (None, transaction_no)
    assert (await connector.refund(refund(15_501))).failure_code == "93"
    assert (await connector.refund(refund(15_500, None))).succeeded
    assert (await connector.refund(refund(1))).failure_code == "93"
    assert (await connector.refund(refund(1, "123"))).failure_code == "91"

    url = await _place(connector, merchant, clock, "PH021")
    await bank.pay(reference=url, outcome="success")
    full = RefundRequest("ref_full", "PH021", None, 25_500, 25_500, START, "")
    assert (await connector.refund(full)).succeeded
    assert (await connector.refund(full)).failure_code == "93"


async def test_unpaid_orders_are_not_refunded(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH022")
    await bank.pay(reference=url, outcome="cancel")
    request = RefundRequest("ref_x", "PH022", None, 25_500, 25_500, None, "")

    result = await connector.refund(request)

    assert (result.succeeded, result.failure_code) == (False, "95")


# --- confirmation faults ------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "reported"), [("bad_signature", "bad_signature"), ("tamper_amount", "tampered")]
)
async def test_forged_ipn_is_rejected_by_the_connector(
    connector: VnpayConnector,
    merchant: Merchant,
    clock: FakeClock,
    bank: Bank,
    knob: str,
    reported: str,
) -> None:
    url = await _place(connector, merchant, clock, "PH030")
    await bank.faults(**{knob: True, "ipn_retries": 0})

    report = await bank.pay(reference=url, outcome="success")

    assert report["confirmations"][0][reported] is True
    assert merchant.outcomes == [ConfirmationOutcome.SIGNATURE_INVALID]
    assert _rsp_codes(report) == [["97"]]
    assert merchant.paid == set()


async def test_lost_confirmation_is_never_sent(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH040")

    report = await bank.pay(reference=url, outcome="success", faults={"lose_confirmation": 1})

    assert report["confirmations"] == [
        {"reference": "PH040", "attempt": 0, "lost": True, "answers": []}
    ]
    assert merchant.queries == []
    # The knob was for that payer only.
    assert (await bank.faults())["lose_confirmation"] == 0


@pytest.mark.parametrize(("concurrent", "most_in_flight"), [(False, 1), (True, 3)])
async def test_duplicated_confirmations_arrive_n_times(
    connector: VnpayConnector,
    merchant: Merchant,
    clock: FakeClock,
    bank: Bank,
    concurrent: bool,
    most_in_flight: int,
) -> None:
    url = await _place(connector, merchant, clock, "PH050")
    await bank.faults(duplicate_confirmation=2, concurrent_duplicates=concurrent)
    merchant.slow_seconds = 0.05

    report = await bank.pay(reference=url, outcome="success")

    assert len(merchant.queries) == 3
    assert merchant.queries[0] == merchant.queries[1] == merchant.queries[2]
    assert sorted(merchant.outcomes) == sorted(
        [ConfirmationOutcome.APPLIED] + [ConfirmationOutcome.ALREADY_APPLIED] * 2
    )
    assert sorted(str(code) for code in _rsp_codes(report)[0]) == ["00", "02", "02"]
    assert merchant.most_in_flight == most_in_flight


async def test_unanswered_ipn_is_resent_until_confirmed(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH060")
    await bank.faults(ipn_retries=3, ipn_retry_seconds=0.01)
    merchant.fail_next = 2

    report = await bank.pay(reference=url, outcome="success")

    assert _rsp_codes(report) == [["99"]]
    assert report["confirmations"][0]["retry_scheduled"] is True
    await merchant.wait_until(lambda: ConfirmationOutcome.APPLIED in merchant.outcomes)
    assert merchant.outcomes == [
        ConfirmationOutcome.ERROR,
        ConfirmationOutcome.ERROR,
        ConfirmationOutcome.APPLIED,
    ]
    attempts = [entry["attempt"] for entry in await bank.confirmations()]
    assert attempts == [0, 1, 2]


async def test_retries_stop_after_the_configured_count(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH061")
    await bank.faults(ipn_retries=2, ipn_retry_seconds=0.01)
    merchant.fail_next = 10

    await bank.pay(reference=url, outcome="success")

    await merchant.wait_until(lambda: len(merchant.outcomes) == 3)
    await asyncio.sleep(0.05)
    assert len(merchant.outcomes) == 3


async def test_faults_are_validated_and_replaced(bank: Bank, http: aiohttp.ClientSession) -> None:
    shown = await bank.faults(latency_ms=[10, 20], error_rate=0.5)
    assert (shown["latency_ms"], shown["error_rate"], shown["ipn_retries"]) == ([10, 20], 0.5, 10)

    for bad in (
        {"no_such_knob": 1},
        {"error_rate": 2},
        {"latency_ms": [20, 10]},
        {"ipn_retries": -1},
    ):
        async with http.put(bank.server.make_url("/_sim/faults"), json=bad) as response:
            assert response.status == 400
    async with http.get(bank.server.make_url("/_sim/faults")) as response:
        assert (await response.json())["error_rate"] == 0.5

    assert (await bank.faults())["error_rate"] == 0


# --- statement ----------------------------------------------------------------------


async def test_statement_holds_the_days_settled_payments(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    first = await bank.pay(reference=await _place(connector, merchant, clock, "PH070"))
    await bank.pay(reference=await _place(connector, merchant, clock, "PH071"), outcome="cancel")
    clock.advance(13 * 3600 + 59 * 60 + 59)  # 23:59:59 in Hà Nội
    await bank.pay(reference=await _place(connector, merchant, clock, "PH072", 150_000))
    clock.advance(1)  # the next business day
    await bank.pay(reference=await _place(connector, merchant, clock, "PH073", 7_000))

    lines = list(connector.read_statement(io.BytesIO(await bank.statement("2026-11-28"))))

    assert [(x.reference, x.amount, x.settled, x.fee) for x in lines] == [
        ("PH070", 25_500, True, 280),
        ("PH072", 150_000, True, 1_650),
    ]
    assert lines[0].bank_transaction_id == first["payments"][0]["vnp_TransactionNo"]
    assert lines[1].booked_at == datetime(2026, 11, 28, 23, 59, 59, tzinfo=VIETNAM)
    [next_day] = connector.read_statement(io.BytesIO(await bank.statement("2026-11-29")))
    assert next_day.reference == "PH073"


async def test_statement_needs_a_date(bank: Bank, http: aiohttp.ClientSession) -> None:
    async with http.get(bank.server.make_url("/_sim/statement")) as response:
        assert response.status == 400


# --- the pay page -------------------------------------------------------------------


async def test_pay_page_renders_and_its_form_pays(
    connector: VnpayConnector,
    merchant: Merchant,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    simulator: TestServer,
) -> None:
    url = await _place(connector, merchant, clock, "PH080")

    async with http.get(url) as response:
        assert response.status == 200
        page = await response.text()
    assert "25.500 VND" in page
    assert "Thanh toan ho so PH080" in page
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action is not None

    form_url = response.url.join(URL(action.group(1)))
    assert form_url == simulator.make_url("/paymentv2/pay")
    form = {"vnp_TxnRef": "PH080", "outcome": "success"}
    async with http.post(form_url, data=form, allow_redirects=False) as response:
        assert response.status == 303
        location = response.headers["Location"]

    assert location.startswith(merchant.return_url)
    assert merchant.outcomes == [ConfirmationOutcome.APPLIED]
    async with http.get(location) as response:
        assert response.status == 200


async def test_pay_page_escapes_what_the_merchant_sent(
    http: aiohttp.ClientSession, simulator: TestServer
) -> None:
    params = {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_TmnCode": TMN_CODE,
        "vnp_Amount": "1000000",
        "vnp_CurrCode": "VND",
        "vnp_TxnRef": "PH<i>081",
        "vnp_OrderInfo": "<script>alert(1)</script>",
        "vnp_OrderType": "other",
        "vnp_Locale": "vn",
        "vnp_ReturnUrl": "http://portal.example/r",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_CreateDate": "20261128100000",
        "vnp_ExpireDate": "20261128101500",
    }
    url = wire.pay_url(str(simulator.make_url("/")), params, SECRET)

    async with http.get(url) as response:
        page = await response.text()

    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'value="PH&lt;i&gt;081"' in page


async def test_pay_page_refuses_a_bad_hash(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    url = await _place(connector, merchant, clock, "PH082")

    async with http.get(url.replace("PH082", "PH083")) as response:
        assert response.status == 400
        assert "97" in await response.text()


# --- mounted as a sub-application ----------------------------------------------------


async def test_simulator_mounted_under_a_prefix(
    merchant: Merchant, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    root = web.Application()
    root.add_subapp(
        "/sim/vnpay/", create_simulator(SIM_OPTIONS, notify_url=merchant.notify_url, clock=clock)
    )
    async with TestServer(root, port=0) as server:
        connector = _make_connector(str(server.make_url("/sim/vnpay")), merchant, http, clock)
        merchant.connector = connector
        url = await _place(connector, merchant, clock, "PH090")
        assert url.startswith(str(server.make_url("/sim/vnpay/paymentv2/vpcpay.html?")))

        async with http.post(
            server.make_url("/sim/vnpay/_sim/pay"), json={"reference": url, "outcome": "success"}
        ) as response:
            assert response.status == 200
        paid = await connector.query_status("PH090", 25_500, clock())

    assert merchant.outcomes == [ConfirmationOutcome.APPLIED]
    assert paid is not None
    assert paid.status is ConfirmationStatus.SUCCEEDED


# --- issue 5 and 6 additions ---------------------------------------------------------


async def test_bare_reference_with_the_amount_paid_is_confirmed(
    connector: VnpayConnector, merchant: Merchant, bank: Bank
) -> None:
    merchant.orders["PH100"] = 30_000
    await bank.pay(status=404, reference="PH100", outcome="success")

    report = await bank.pay(reference="PH100", outcome="success", amount=30_000)

    assert _rsp_codes(report) == [["00"]]
    assert merchant.paid == {"PH100"}
    assert report["return_url"] is None


async def test_pay_page_shows_the_deadline_in_gmt7(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    url = await _place(connector, merchant, clock, "PH101")

    async with http.get(url) as response:
        page = await response.text()

    assert "28/11/2026 10:15:00 (GMT+7)" in page  # created 10:00 Hà Nội, 15 minutes to pay


async def test_querydr_answer_is_signed_over_15_fields(
    simulator: TestServer, http: aiohttp.ClientSession
) -> None:
    request = {
        "vnp_RequestId": "req-15",
        "vnp_Version": "2.1.0",
        "vnp_Command": "querydr",
        "vnp_TmnCode": TMN_CODE,
        "vnp_TxnRef": "PH102",
        "vnp_TransactionDate": "20261128100000",
        "vnp_CreateDate": "20261128100100",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_OrderInfo": "Truy van",
    }
    request["vnp_SecureHash"] = wire.sign_fields(request, wire.QUERYDR_FIELDS, SECRET)

    async with http.post(simulator.make_url(wire.API_PATH), json=request) as response:
        answer = await response.json()

    assert answer["vnp_ResponseCode"] == "91"
    assert wire.verify_fields(answer, wire.QUERYDR_RESPONSE_FIELDS, SECRET)
    assert not wire.verify_fields(answer, wire.REFUND_RESPONSE_FIELDS, SECRET)


async def test_reordered_confirmations_send_the_success_first(
    connector: VnpayConnector, merchant: Merchant, clock: FakeClock, bank: Bank
) -> None:
    url = await _place(connector, merchant, clock, "PH103")

    report = await bank.pay(
        reference=url, outcome="declined_then_paid", faults={"reorder_confirmations": True}
    )

    assert [p["vnp_ResponseCode"] for p in report["payments"]] == ["51", "00"]
    assert [c.status for c in merchant.confirmations] == [
        ConfirmationStatus.SUCCEEDED,
        ConfirmationStatus.FAILED,
    ]
    assert merchant.outcomes == [ConfirmationOutcome.APPLIED, ConfirmationOutcome.ALREADY_APPLIED]
