"""The VNPay connector reads querydr answers signed by the npm ``vnpay`` library's rules.

That library (``QueryService.queryDr``) checks the answer's hash over 15 values:
``ResponseId|Command|ResponseCode|Message|<its own tmnCode>|TxnRef|Amount|BankCode|PayDate|
TransactionNo|TransactionType|TransactionStatus|OrderInfo|PromotionCode|PromotionAmount``,
each through JavaScript's ``String()``, ``undefined`` becoming empty. A tiny gateway here
answers exactly that, so a connector that signs over 13 fields would fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from banks.vnpay.connector import VnpayConnector
from payhub.connectors.port import ConfirmationStatus, ConnectorContext, RefundRequest
from payhub.domain.clock import FakeClock
from payhub.errors import BankAnswerInvalid

TMN, SECRET = "PAYHUB01", "PAYHUBTESTSECRET0123456789ABCDEF"
QUERYDR_ORDER = (
    "vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode",
    "vnp_TxnRef", "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo",
    "vnp_TransactionType", "vnp_TransactionStatus", "vnp_OrderInfo", "vnp_PromotionCode",
    "vnp_PromotionAmount",
)  # fmt: skip


def js_string(value: Any) -> str:
    """JavaScript's ``String()`` for the JSON values VNPay sends, ``undefined`` as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def npm_vnpay_querydr_hash(answer: dict[str, Any], tmn_code: str, secret: str) -> str:
    values = [answer.get(name) for name in QUERYDR_ORDER]
    values[4] = tmn_code  # the library signs its configured tmnCode, not the answer's
    text = "|".join(js_string(v) for v in values).replace("undefined", "")
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def paid_answer(**extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "vnp_ResponseId": "9e5f6c0a5b2d4c1e8f7a6b5c4d3e2f10",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "00",
        "vnp_Message": "QueryDR Success",
        "vnp_TmnCode": TMN,
        "vnp_TxnRef": "PH20261128000001",
        "vnp_Amount": "2550000",
        "vnp_OrderInfo": "Thanh toan ho so",
        "vnp_BankCode": "NCB",
        "vnp_PayDate": "20261128100512",
        "vnp_TransactionNo": "14000001",
        "vnp_TransactionType": "01",
        "vnp_TransactionStatus": "00",
    }
    answer.update(extra)
    return answer


class Gateway:
    def __init__(self) -> None:
        self.answer: dict[str, Any] = {}

    async def api(self, request: web.Request) -> web.Response:
        await request.json()
        return web.Response(text=json.dumps(self.answer), content_type="application/json")


@pytest.fixture(name="gateway")
async def _gateway() -> AsyncIterator[tuple[Gateway, VnpayConnector]]:
    gateway = Gateway()
    app = web.Application()
    app.router.add_post("/merchant_webapi/api/transaction", gateway.api)
    async with TestServer(app, port=0) as server, aiohttp.ClientSession() as http:
        options = {"tmn_code": TMN, "hash_secret": SECRET, "base_url": str(server.make_url("/"))}
        clock = FakeClock(datetime(2026, 11, 28, 4, 0, tzinfo=UTC))
        context = ConnectorContext(http=http, clock=clock, notify_url="http://hub/notify")
        yield gateway, VnpayConnector("vnpay", options, context)


@pytest.mark.parametrize(
    "promotion",
    [{}, {"vnp_PromotionCode": "", "vnp_PromotionAmount": ""},
     {"vnp_PromotionCode": "KM2026", "vnp_PromotionAmount": "500000"}],
)  # fmt: skip
async def test_querydr_answer_signed_by_npm_vnpay_rules_verifies(
    gateway: tuple[Gateway, VnpayConnector], promotion: dict[str, str]
) -> None:
    bank, connector = gateway
    answer = paid_answer(**promotion)
    answer["vnp_SecureHash"] = npm_vnpay_querydr_hash(answer, TMN, SECRET)
    bank.answer = answer

    paid = await connector.query_status("PH20261128000001", 25_500, datetime.now(UTC))

    assert paid is not None
    assert paid.status is ConfirmationStatus.SUCCEEDED
    assert (paid.amount, paid.bank_transaction_id) == (25_500, "14000001")


async def test_querydr_answer_signed_over_13_fields_is_refused(
    gateway: tuple[Gateway, VnpayConnector],
) -> None:
    bank, connector = gateway
    answer = paid_answer(vnp_PromotionCode="KM2026", vnp_PromotionAmount="500000")
    thirteen = "|".join(js_string(answer.get(name)) for name in QUERYDR_ORDER[:13])
    answer["vnp_SecureHash"] = hmac.new(
        SECRET.encode(), thirteen.encode(), hashlib.sha512
    ).hexdigest()
    bank.answer = answer

    with pytest.raises(BankAnswerInvalid, match="hash"):
        await connector.query_status("PH20261128000001", 25_500, datetime.now(UTC))


async def test_querydr_answer_about_another_terminal_is_refused(
    gateway: tuple[Gateway, VnpayConnector],
) -> None:
    bank, connector = gateway
    answer = paid_answer(vnp_TmnCode="OTHER001")
    answer["vnp_SecureHash"] = npm_vnpay_querydr_hash(answer, "OTHER001", SECRET)
    bank.answer = answer

    with pytest.raises(BankAnswerInvalid):
        await connector.query_status("PH20261128000001", 25_500, datetime.now(UTC))


async def test_refund_answer_stays_signed_over_13_fields(
    gateway: tuple[Gateway, VnpayConnector],
) -> None:
    bank, connector = gateway
    answer = paid_answer(
        vnp_Command="refund", vnp_TransactionType="02", vnp_TransactionNo="14000002"
    )
    thirteen = "|".join(js_string(answer.get(name)) for name in QUERYDR_ORDER[:13])
    answer["vnp_SecureHash"] = hmac.new(
        SECRET.encode(), thirteen.encode(), hashlib.sha512
    ).hexdigest()
    bank.answer = answer
    request = RefundRequest("rfd_1", "PH20261128000001", "14000001", 25_500, 25_500, None, "")

    result = await connector.refund(request)

    assert (result.succeeded, result.bank_refund_id) == (True, "14000002")
