"""A MoMo v2 gateway in a box: create, pay page, IPNs, query, refunds and statement.

``create_simulator(options, notify_url=..., clock=...)`` returns an aiohttp application
that plays MoMo for one merchant account (options ``partner_code``, ``access_key`` and
``secret_key`` as in the hub's bank table; optional ``seed``, ``fee_basis_points`` and
``faults``). Fault knobs, payer machinery, control routes and the statement come from
``banks.simulation``; this module holds MoMo's protocol only. Routes, relative to its root:

- ``POST /v2/gateway/api/create`` captureWallet: 13 bad signature or partner, 20 bad
  format, 21/22 bad or out-of-range amount (1,000–50,000,000 VND), 40 duplicate
  ``requestId``, 41 duplicate ``orderId``; answers ``payUrl`` (this simulator's pay
  page), ``deeplink`` and ``qrCodeUrl``;
- ``GET /v2/gateway/pay?t=…`` the pay page (deadline ``orderExpireTime`` minutes after
  create, else 100, shown in GMT+7); ``POST /v2/gateway/pay`` its form: plays the payer,
  sends the IPN (POST JSON to the order's ``ipnUrl``; resent on the bank's schedule until
  answered 204), then redirects to ``redirectUrl`` with the same signed fields;
- ``POST /v2/gateway/api/query``: 42 unknown order, else the order's state (its
  success, else its last attempt, else 1000 waiting for the payer);
- ``POST /v2/gateway/api/refund``: a new ``orderId`` against the original ``transId``,
  partial refunds allowed up to what is left (1080 beyond it);
- the control routes of ``banks.simulation.control``: ``POST /_sim/pay`` takes an
  ``orderId`` or a ``payUrl``; outcomes ``success`` (0), ``insufficient_funds`` (1001),
  ``cancel`` (1006 payer declined), ``timeout`` (1005 expired), ``processing`` (7000, not
  final), ``pay_twice`` (two successful transactions), ``declined_then_paid`` (1006,
  then a success), ``late`` and ``abandon``; ``amount`` makes MoMo report another amount.

One knob of its own beside the toolkit's: ``query_result_code`` (``null`` or one of the
API-request codes 10–13, 20–22, 40–47, 98, 99) makes every query answer that code.
The statement CSV (``transId,orderId,amount,resultCode,pay_date,fee,partnerCode``) holds
successful payments only, each line naming the merchant.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from banks.momo import wire
from banks.simulation import (
    Faults,
    OrderRejected,
    Outgoing,
    PendingConfirmation,
    Settlement,
    SimulatedBank,
    StatementFile,
    UnknownReference,
    daily_csv,
    pages,
    simulator_app,
)
from banks.simulation.faults import KnobReader, one_of
from payhub.domain.clock import Clock, system_clock
from payhub.errors import ConfigError

STATEMENT_HEADER = ("transId", "orderId", "amount", "resultCode", "pay_date", "fee", "partnerCode")
TAMPER_DELTA = 1_000
PAY_WINDOW = timedelta(minutes=100)
PAY_TYPE = "qr"

OUTCOMES: dict[str, tuple[int, ...]] = {
    "success": (0,),
    "insufficient_funds": (1001,),
    "cancel": (1006,),
    "timeout": (1005,),
    "processing": (7000,),
    "pay_twice": (0, 0),
    "declined_then_paid": (1006, 0),
}
PAGE_OUTCOMES = (
    ("success", "Pay"),
    ("insufficient_funds", "Pay (insufficient funds)"),
    ("cancel", "Decline"),
)
_ERROR_TITLE = "Giao dịch không hợp lệ"


@dataclass(frozen=True)
class MomoFaults(Faults):
    """The toolkit's knobs plus ``query_result_code``."""

    query_result_code: int | None = None

    READERS: ClassVar[dict[str, KnobReader]] = {
        **Faults.READERS,
        "query_result_code": one_of(wire.API_REQUEST_CODES),
    }


@dataclass
class Payment:
    trans_id: int
    result_code: int
    amount: int
    at: datetime


@dataclass
class Refund:
    order_id: str
    trans_id: int
    amount: int
    at: datetime


@dataclass
class Order:
    """An order as the merchant created it, and what happened to it since."""

    order_id: str
    request_id: str
    amount: int
    order_info: str
    redirect_url: str
    ipn_url: str
    extra_data: str
    created_at: datetime
    token: str
    pay_window: timedelta = PAY_WINDOW
    """``orderExpireTime`` minutes when the merchant sent one, else MoMo's 100."""
    payments: list[Payment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)

    @property
    def success(self) -> Payment | None:
        return next((p for p in self.payments if p.result_code == wire.SUCCESS), None)

    @property
    def refundable(self) -> int:
        paid = self.success
        return 0 if paid is None else paid.amount - sum(r.amount for r in self.refunds)


class MomoGateway(SimulatedBank[Order]):
    """MoMo's memory for one partner."""

    outcomes = tuple(OUTCOMES)
    faults_class = MomoFaults

    def __init__(
        self, *, partner_code: str, access_key: str, secret_key: str, **common: Any
    ) -> None:
        super().__init__(**common)
        self.partner_code = partner_code
        self.access_key = access_key
        self.secret_key = secret_key
        self.orders: dict[str, Order] = {}
        self.tokens: dict[str, str] = {}
        self.request_ids: set[str] = set()
        self.refund_order_ids: set[str] = set()
        self._last_trans_id = 3_100_000_000

    def next_trans_id(self) -> int:
        self._last_trans_id += 1
        return self._last_trans_id

    def response_time(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def signed(self, body: Mapping[str, Any], fields: tuple[str, ...]) -> bool:
        return wire.verify(body, fields, self.access_key, self.secret_key)

    def claim_request_id(self, body: Mapping[str, Any]) -> int | None:
        """``None`` when the requestId is new (and now used), else the answer code."""
        request_id = body.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            return 20
        if request_id in self.request_ids:
            return 40
        self.request_ids.add(request_id)
        return None

    # --- orders ---------------------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> tuple[int, Order | None]:
        """A captureWallet order from a checked create request, or the refusal code."""
        if body.get("partnerCode") != self.partner_code or not self.signed(
            body, wire.CREATE_FIELDS
        ):
            return 13, None
        strings = ("orderId", "orderInfo", "redirectUrl", "ipnUrl", "extraData")
        if body.get("requestType") != wire.REQUEST_TYPE or not all(
            isinstance(body.get(name), str) for name in strings
        ):
            return 20, None
        if not wire.is_order_id(body["orderId"]):
            return 20, None
        amount = body.get("amount")
        if not wire.is_integer(amount):
            return 21, None
        if not wire.MIN_AMOUNT <= amount <= wire.MAX_AMOUNT:
            return 22, None
        refused = self.claim_request_id(body)
        if refused is not None:
            return refused, None
        if body["orderId"] in self.orders or body["orderId"] in self.refund_order_ids:
            return 41, None
        expire_minutes = body.get("orderExpireTime")
        if expire_minutes is not None and not (
            wire.is_integer(expire_minutes) and 1 <= expire_minutes <= 30 * 24 * 60
        ):
            return 20, None
        token = secrets.token_urlsafe(12)
        order = Order(
            order_id=body["orderId"],
            request_id=body["requestId"],
            amount=amount,
            order_info=body["orderInfo"],
            redirect_url=body["redirectUrl"],
            ipn_url=body["ipnUrl"] or self.notify_url,
            extra_data=body["extraData"],
            created_at=self.clock(),
            token=token,
            pay_window=PAY_WINDOW if expire_minutes is None else timedelta(minutes=expire_minutes),
        )
        self.orders[order.order_id] = order
        self.tokens[token] = order.order_id
        return 0, order

    def resolve(self, reference: str, amount: int | None) -> Order:
        if "?" in reference:
            token = dict(parse_qsl(urlsplit(reference).query)).get("t", "")
            reference = self.tokens.get(token, "")
        found = self.orders.get(reference)
        if found is None:
            raise UnknownReference(f"MoMo has no order {reference!r}")
        return found

    def order_reference(self, order: Order) -> str:
        return order.order_id

    def pay(self, order: Order, outcome: str, amount: int | None) -> list[Payment]:
        codes = OUTCOMES[outcome]
        if wire.SUCCESS in codes and order.success is not None:
            raise OrderRejected("41", "Order already paid")
        now = self.clock()
        expired = now > order.created_at + order.pay_window
        made = []
        for code in codes:
            if self.faults.enforce_expiry and expired:
                code = 1005
            payment = Payment(
                trans_id=self.next_trans_id(),
                result_code=code,
                amount=order.amount if amount is None else amount,
                at=now,
            )
            order.payments.append(payment)
            made.append(payment)
        return made

    async def play(
        self, order: Order, outcome: str, amount: int | None, faults: Faults
    ) -> dict[str, Any]:
        report: dict[str, Any] = {"reference": order.order_id, "outcome": outcome}
        if outcome == "abandon":
            return report | {"payments": [], "confirmations": []}
        payments = self.pay(order, outcome, amount)
        report["payments"] = [
            {"transId": p.trans_id, "resultCode": p.result_code, "amount": p.amount}
            for p in payments
        ]
        pending = [self._ipn(order, p) for p in payments]
        report["confirmations"] = await self.deliver(pending, faults)
        last = self.result(order, payments[-1])
        last["signature"] = wire.sign(
            {**last, "accessKey": self.access_key}, wire.IPN_FIELDS, self.secret_key
        )
        separator = "&" if "?" in order.redirect_url else "?"
        report["return_url"] = f"{order.redirect_url}{separator}{urlencode(last)}"
        return report

    # --- IPNs -----------------------------------------------------------------------

    def result(self, order: Order, payment: Payment) -> dict[str, Any]:
        """The IPN body of one payment, unsigned (``accessKey`` is not sent)."""
        return {
            "partnerCode": self.partner_code,
            "orderId": order.order_id,
            "requestId": order.request_id,
            "amount": payment.amount,
            "orderInfo": order.order_info,
            "orderType": wire.ORDER_TYPE,
            "transId": payment.trans_id,
            "resultCode": payment.result_code,
            "message": wire.message(payment.result_code),
            "payType": PAY_TYPE,
            "responseTime": int(payment.at.timestamp() * 1000),
            "extraData": order.extra_data,
        }

    def _ipn(self, order: Order, payment: Payment) -> PendingConfirmation:
        body = self.result(order, payment)

        def build(forged: bool, tampered: bool) -> Outgoing:
            secret = f"not-{self.secret_key}" if forged else self.secret_key
            sent = dict(body)
            sent["signature"] = wire.sign(
                {**body, "accessKey": self.access_key}, wire.IPN_FIELDS, secret
            )
            if tampered:
                sent["amount"] = body["amount"] + TAMPER_DELTA
            data = json.dumps(sent, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json; charset=utf-8"}
            return Outgoing("POST", order.ipn_url, data, headers)

        return PendingConfirmation(order.order_id, build)

    def read_answer(self, status: int, body: bytes) -> dict[str, Any]:
        return {"http_status": status}

    def accepted(self, answer: Mapping[str, Any]) -> bool:
        return answer.get("http_status") == 204

    # --- query and refund -----------------------------------------------------------

    def query(self, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._api_answer(body)
        if body.get("partnerCode") != self.partner_code or not self.signed(body, wire.QUERY_FIELDS):
            return answer | self._code(13)
        refused = self.claim_request_id(body)
        if refused is not None:
            return answer | self._code(refused)
        forced = getattr(self.faults, "query_result_code", None)
        if forced is not None:
            return answer | self._code(forced)
        order = self.orders.get(str(body.get("orderId", "")))
        if order is None:
            return answer | self._code(42)
        payment = order.success or (order.payments[-1] if order.payments else None)
        answer |= {
            "extraData": order.extra_data,
            "amount": order.amount if payment is None else payment.amount,
            "transId": 0 if payment is None else payment.trans_id,
            "payType": "" if payment is None else PAY_TYPE,
            "refundTrans": [
                {"orderId": r.order_id, "amount": r.amount, "transId": r.trans_id}
                for r in order.refunds
            ],
        }
        return answer | self._code(1000 if payment is None else payment.result_code)

    def refund(self, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._api_answer(body)
        if body.get("partnerCode") != self.partner_code or not self.signed(
            body, wire.REFUND_FIELDS
        ):
            return answer | self._code(13)
        order_id, amount, trans_id = body.get("orderId"), body.get("amount"), body.get("transId")
        if not (isinstance(order_id, str) and wire.is_order_id(order_id)):
            return answer | self._code(20)
        if not wire.is_integer(trans_id):
            return answer | self._code(20)
        if not wire.is_integer(amount):
            return answer | self._code(21)
        if not wire.MIN_AMOUNT <= amount <= wire.MAX_AMOUNT:
            return answer | self._code(22)
        refused = self.claim_request_id(body)
        if refused is not None:
            return answer | self._code(refused)
        if order_id in self.orders or order_id in self.refund_order_ids:
            return answer | self._code(41)
        original = next(
            (o for o in self.orders.values() if o.success and o.success.trans_id == trans_id),
            None,
        )
        if original is None:
            return answer | self._code(42)
        if amount > original.refundable:
            return answer | self._code(1080)
        refund = Refund(order_id, self.next_trans_id(), amount, self.clock())
        original.refunds.append(refund)
        self.refund_order_ids.add(order_id)
        return answer | {"amount": amount, "transId": refund.trans_id} | self._code(0)

    def _api_answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "partnerCode": self.partner_code,
            "orderId": body.get("orderId"),
            "requestId": body.get("requestId"),
            "responseTime": self.response_time(),
        }

    @staticmethod
    def _code(code: int) -> dict[str, Any]:
        return {"resultCode": code, "message": wire.message(code)}

    def statement(self, day: date) -> StatementFile:
        settlements = (
            Settlement(
                transaction_id=str(payment.trans_id),
                reference=order.order_id,
                amount=payment.amount,
                status=str(payment.result_code),
                at=payment.at,
                fee=self.fee(payment.amount),
            )
            for order in self.orders.values()
            for payment in order.payments
            if payment.result_code == wire.SUCCESS
        )
        return StatementFile(
            text=daily_csv(STATEMENT_HEADER, settlements, day, self.partner_code),
            content_type="text/csv",
            filename=f"momo-{day:%Y%m%d}.csv",
        )


GATEWAY = web.AppKey("momo_gateway", MomoGateway)


def create_simulator(
    options: Mapping[str, Any], *, notify_url: str, clock: Clock | None = None
) -> web.Application:
    """The simulator app for one partner; IPNs go to each order's ``ipnUrl``."""
    keys = [options.get(name) for name in ("partner_code", "access_key", "secret_key")]
    if not all(isinstance(key, str) and key for key in keys):
        raise ConfigError("the MoMo simulator needs partner_code, access_key and secret_key")
    fee = options.get("fee_basis_points", 0)
    if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
        raise ConfigError("fee_basis_points must be a whole number >= 0")
    try:
        faults = MomoFaults.from_json(options.get("faults", {}))
    except ValueError as exc:
        raise ConfigError(f"MoMo simulator faults: {exc}") from exc
    gateway = MomoGateway(
        partner_code=str(keys[0]),
        access_key=str(keys[1]),
        secret_key=str(keys[2]),
        notify_url=notify_url,
        clock=clock or system_clock,
        seed=options.get("seed"),
        faults=faults,
        fee_basis_points=fee,
    )
    app = simulator_app(gateway)
    app[GATEWAY] = gateway
    app.router.add_post(wire.CREATE_PATH, create)
    app.router.add_post(wire.QUERY_PATH, query)
    app.router.add_post(wire.REFUND_PATH, refund)
    app.router.add_get(wire.PAY_PATH, pay_page)
    app.router.add_post(wire.PAY_PATH, pay_form)
    return app


async def _api_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _bad_format() -> web.Response:
    return web.json_response(
        {"resultCode": 20, "message": wire.message(20), "responseTime": int(time.time() * 1000)},
        status=400,
    )


async def create(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    failed = await gateway.api_fault(request)
    if failed is not None:
        return failed
    body = await _api_body(request)
    if body is None:
        return _bad_format()
    code, order = gateway.create(body)
    if await gateway.answer_lost():
        return web.Response(status=503)
    answer: dict[str, Any] = {
        "partnerCode": gateway.partner_code,
        "requestId": body.get("requestId"),
        "orderId": body.get("orderId"),
        "amount": body.get("amount"),
        "responseTime": gateway.response_time(),
        "resultCode": code,
        "message": wire.message(code),
    }
    if order is not None:
        # The pay page is this simulator's, wherever it is mounted and however reached.
        root = request.path[: -len(wire.CREATE_PATH)]
        pay_url = request.url.origin().with_path(root + wire.PAY_PATH).with_query(t=order.token)
        answer |= {
            "payUrl": str(pay_url),
            "deeplink": f"momo://app?action=payWithApp&t={order.token}",
            "qrCodeUrl": f"momo://app?action=payWithApp&t={order.token}",
        }
    return web.json_response(answer)


async def query(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    failed = await gateway.api_fault(request)
    if failed is not None:
        return failed
    body = await _api_body(request)
    return _bad_format() if body is None else web.json_response(gateway.query(body))


async def refund(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    failed = await gateway.api_fault(request)
    if failed is not None:
        return failed
    body = await _api_body(request)
    if body is None:
        return _bad_format()
    answer = gateway.refund(body)
    if await gateway.answer_lost():  # refunded (or refused), and the merchant never hears
        return web.Response(status=503)
    return web.json_response(answer)


async def pay_page(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    order_id = gateway.tokens.get(request.query.get("t", ""))
    order = gateway.orders.get(order_id or "")
    if order is None:
        return pages.page(_ERROR_TITLE, pages.error("42", wire.message(42)), status=404)
    rows = [
        ("Merchant", gateway.partner_code),
        ("Order", order.order_id),
        ("Description", order.order_info),
        ("Amount", pages.vnd(order.amount)),
        ("Pay before", pages.deadline(order.created_at + order.pay_window)),
    ]
    body = pages.details(rows) + pages.outcome_form("pay", {"t": order.token}, PAGE_OUTCOMES)
    return pages.page("MoMo sandbox (simulator)", body)


async def pay_form(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    form = await request.post()
    token, outcome = form.get("t"), form.get("outcome")
    if not isinstance(token, str) or outcome not in dict(PAGE_OUTCOMES):
        return pages.page(_ERROR_TITLE, "<p>Bad form.</p>", status=400)
    order = gateway.orders.get(gateway.tokens.get(token, ""))
    if order is None:
        return pages.page(_ERROR_TITLE, pages.error("42", wire.message(42)), status=404)
    try:
        report = await gateway.play(order, str(outcome), None, gateway.faults)
    except OrderRejected as exc:
        return pages.page(_ERROR_TITLE, pages.error(exc.code, exc.message), status=409)
    raise web.HTTPSeeOther(report["return_url"])


__all__ = ["GATEWAY", "MomoFaults", "MomoGateway", "create_simulator"]
