"""The MoMo connector against the MoMo simulator over real HTTP on port 0.

A tiny merchant stands in for the hub: it reads IPNs with the connector and answers 204.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from banks.momo import wire
from banks.momo.connector import MomoConnector
from banks.momo.simulator import create_simulator
from banks.simulation import ManualClock
from payhub.connectors.port import (
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
    RefundRequest,
)
from payhub.errors import (
    BankAnswerInvalid,
    BankUnavailable,
    ConfirmationRejected,
)

PARTNER, ACCESS, SECRET = "MOMOTEST01", "access-key-1", "secret-key-0123456789"
START = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
OPTIONS = {"partner_code": PARTNER, "access_key": ACCESS, "secret_key": SECRET, "seed": 3}


class Merchant:
    def __init__(self) -> None:
        self.confirmations: list[Confirmation] = []
        self.rejected = 0
        self.refuse_next = 0
        self.connector: MomoConnector | None = None
        self.seen = asyncio.Event()

    async def ipn(self, request: web.Request) -> web.Response:
        assert self.connector is not None
        message = InboundMessage("POST", {}, dict(request.headers), await request.read())
        self.seen.set()
        try:
            self.confirmations.extend(self.connector.parse_confirmation(message))
        except ConfirmationRejected:
            self.rejected += 1
            answer = self.connector.answer_confirmation(ConfirmationOutcome.SIGNATURE_INVALID)
            return web.Response(status=answer.status, body=answer.body)
        if self.refuse_next:
            self.refuse_next -= 1
            return web.Response(status=503)
        answer = self.connector.answer_confirmation(ConfirmationOutcome.APPLIED)
        return web.Response(status=answer.status)


@pytest.fixture(name="clock")
def _clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(name="merchant")
async def _merchant() -> AsyncIterator[tuple[Merchant, str]]:
    merchant = Merchant()
    app = web.Application()
    app.router.add_post("/ipn", merchant.ipn)
    async with TestServer(app, port=0) as server:
        yield merchant, str(server.make_url("/ipn"))


@pytest.fixture(name="world")
async def _world(
    merchant: tuple[Merchant, str], clock: ManualClock
) -> AsyncIterator[tuple[MomoConnector, Merchant, TestServer, aiohttp.ClientSession]]:
    ledger, notify_url = merchant
    server = TestServer(create_simulator(OPTIONS, notify_url=notify_url, clock=clock), port=0)
    async with server, aiohttp.ClientSession() as http:
        options = {
            "partner_code": PARTNER,
            "access_key": ACCESS,
            "secret_key": SECRET,
            "base_url": str(server.make_url("/")),
            "timeout_seconds": 1,
        }
        connector = MomoConnector(
            "momo", options, ConnectorContext(http=http, clock=clock, notify_url=notify_url)
        )
        ledger.connector = connector
        yield connector, ledger, server, http


World = tuple[MomoConnector, Merchant, TestServer, aiohttp.ClientSession]


async def eventually(condition: Callable[[], bool]) -> None:
    """Let the simulator's background work run until ``condition`` holds (at most 2 s)."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def place(
    connector: MomoConnector, clock: ManualClock, ref: str, amount: int = 25_500
) -> str:
    placed = await connector.place_order(
        OrderRequest(
            payment_id=f"pay_{ref}",
            bank_reference=ref,
            amount=amount,
            order_info=f"Thanh toán hồ sơ {ref}",
            return_url="http://portal.example/back",
            created_at=clock(),
            expires_at=clock() + timedelta(minutes=15),
        )
    )
    assert placed.payment_url is not None
    return placed.payment_url


async def control(
    world: World, path: str, method: str = "POST", status: int = 200, **body: Any
) -> Any:
    _, _, server, http = world
    async with http.request(method, server.make_url(path), json=body) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def test_create_ipn_and_query(world: World, clock: ManualClock) -> None:
    connector, merchant, _, _ = world
    assert await place(connector, clock, "PHM1")
    waiting = await connector.query_status("PHM1", 25_500, clock())
    assert waiting is not None and waiting.status is ConfirmationStatus.PENDING

    report = await control(world, "/_sim/pay", reference="PHM1")

    [confirmation] = merchant.confirmations
    assert confirmation.status is ConfirmationStatus.SUCCEEDED
    assert (confirmation.bank_reference, confirmation.amount) == ("PHM1", 25_500)
    assert confirmation.bank_transaction_id == str(report["payments"][0]["transId"])
    assert confirmation.paid_at == START
    paid = await connector.query_status("PHM1", 25_500, clock())
    assert paid is not None and paid.status is ConfirmationStatus.SUCCEEDED
    assert paid.bank_transaction_id == confirmation.bank_transaction_id


async def test_lost_ipn_is_recovered_by_query(world: World, clock: ManualClock) -> None:
    connector, merchant, _, _ = world
    await place(connector, clock, "PHM2")

    report = await control(world, "/_sim/pay", reference="PHM2", faults={"lose_confirmation": 1})

    assert report["confirmations"][0]["lost"] is True
    assert merchant.confirmations == []
    paid = await connector.query_status("PHM2", 25_500, clock())
    assert paid is not None and paid.status is ConfirmationStatus.SUCCEEDED


@pytest.mark.parametrize("code", sorted(wire.API_REQUEST_CODES))
async def test_query_answering_an_api_request_code_changes_nothing(
    world: World, clock: ManualClock, code: int
) -> None:
    connector, _, _, _ = world
    await place(connector, clock, "PHM3")
    await control(world, "/_sim/pay", reference="PHM3")
    await control(world, "/_sim/faults", "PUT", query_result_code=code)

    expected = BankUnavailable if code in wire.TRANSIENT_API_CODES else BankAnswerInvalid
    with pytest.raises(expected):
        await connector.query_status("PHM3", 25_500, clock())


async def test_unknown_order_query_raises(world: World, clock: ManualClock) -> None:
    connector, _, _, _ = world
    with pytest.raises(BankAnswerInvalid):
        await connector.query_status("NOPE", 25_500, clock())


async def test_create_refuses_duplicates_and_out_of_range(world: World, clock: ManualClock) -> None:
    connector, _, _, _ = world
    await place(connector, clock, "PHM4")
    with pytest.raises(BankAnswerInvalid, match="41"):
        await place(connector, clock, "PHM4")
    with pytest.raises(BankAnswerInvalid, match="22"):
        await place(connector, clock, "PHM5", amount=999)


async def test_refunds_partial_and_full(world: World, clock: ManualClock) -> None:
    connector, merchant, _, _ = world
    await place(connector, clock, "PHM6")
    await control(world, "/_sim/pay", reference="PHM6")
    trans_id = merchant.confirmations[0].bank_transaction_id

    def refund(refund_id: str, amount: int) -> RefundRequest:
        return RefundRequest(refund_id, "PHM6", trans_id, amount, 25_500, START, "Hoàn phí")

    partial = await connector.refund(refund("rfd_1", 10_000))
    assert partial.succeeded and partial.bank_refund_id not in (None, trans_id)
    assert (await connector.refund(refund("rfd_2", 15_501))).failure_code == "1080"
    assert (await connector.refund(refund("rfd_3", 15_500))).succeeded
    assert (await connector.refund(refund("rfd_4", 1_000))).failure_code == "1080"
    assert (await connector.refund(refund("rfd_5", 999))).failure_code == "22"


async def test_asking_again_about_a_refund_never_refunds_twice(
    world: World, clock: ManualClock
) -> None:
    connector, merchant, _, _ = world
    await place(connector, clock, "PHM7")
    await control(world, "/_sim/pay", reference="PHM7")
    trans_id = merchant.confirmations[0].bank_transaction_id

    def refund(refund_id: str, amount: int) -> RefundRequest:
        return RefundRequest(refund_id, "PHM7", trans_id, amount, 25_500, START, "Hoàn phí")

    assert connector.recovers_refunds
    made = await connector.refund(refund("rfd_1", 10_000))
    # the answer to rfd_1 was "lost": asking again gets 41 and finds it in refundTrans
    assert await connector.refund_outcome(refund("rfd_1", 10_000)) == made
    # rfd_2 never reached MoMo: asking is sending it, once
    sent = await connector.refund_outcome(refund("rfd_2", 15_500))
    assert sent is not None and sent.succeeded and sent.bank_refund_id != made.bank_refund_id
    assert await connector.refund_outcome(refund("rfd_2", 15_500)) == sent
    # nothing is left to refund: a third refund is refused, not made
    refused = await connector.refund_outcome(refund("rfd_3", 1_000))
    assert refused is not None and refused.failure_code == "1080"


async def test_resends_follow_the_banks_schedule_on_the_manual_clock(
    world: World, clock: ManualClock
) -> None:
    connector, merchant, _, _ = world
    await place(connector, clock, "PHM7")
    merchant.refuse_next = 2
    await control(world, "/_sim/faults", "PUT", ipn_retries=5, ipn_retry_seconds=60, ipn_backoff=2)

    report = await control(world, "/_sim/pay", reference="PHM7")

    assert report["confirmations"][0]["answers"] == [{"http_status": 503}]
    for step, seen in ((60, 2), (120, 3)):  # 60 s, then doubled
        await eventually(lambda: clock.waiting == 1)
        clock.advance(step - 1)
        await asyncio.sleep(0.02)
        assert len(merchant.confirmations) == seen - 1
        clock.advance(1)
        await eventually(lambda: len(merchant.confirmations) == seen)  # noqa: B023
    attempts = await control(world, "/_sim/confirmations", "GET")
    assert [(a["attempt"], a["answers"]) for a in attempts] == [
        (0, [{"http_status": 503}]),
        (1, [{"http_status": 503}]),
        (2, [{"http_status": 204}]),
    ]


async def test_statement_holds_the_days_successes(world: World, clock: ManualClock) -> None:
    connector, _, server, http = world
    await place(connector, clock, "PHM8")
    await control(world, "/_sim/pay", reference="PHM8")
    await place(connector, clock, "PHM9")
    await control(world, "/_sim/pay", reference="PHM9", outcome="cancel")

    url = server.make_url("/_sim/statement").with_query(date="2026-11-28")
    async with http.get(url) as response:
        assert response.content_type == "text/csv"
        lines = list(connector.read_statement(io.BytesIO(await response.read())))

    assert [(x.reference, x.amount, x.settled) for x in lines] == [("PHM8", 25_500, True)]


async def test_pay_page_shows_the_deadline_in_gmt7(world: World, clock: ManualClock) -> None:
    connector, merchant, _, http = world
    url = await place(connector, clock, "PHM10")

    async with http.get(url) as response:
        page = await response.text()

    assert "25.500 VND" in page
    assert "28/11/2026 10:15:00 (GMT+7)" in page  # the hub's deadline, sent as orderExpireTime
    form = {"t": url.rsplit("t=", 1)[1], "outcome": "success"}
    async with http.post(url.split("?")[0], data=form, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"].startswith("http://portal.example/back?")
    assert merchant.confirmations[0].status is ConfirmationStatus.SUCCEEDED


async def test_ipn_with_float_amount_is_malformed(world: World) -> None:
    connector, _, _, _ = world
    body = {"amount": 25500.0, "transId": 1, "resultCode": 0, "responseTime": 1}
    with pytest.raises(ConfirmationRejected):
        connector.parse_confirmation(InboundMessage("POST", {}, {}, json.dumps(body).encode()))
