"""A VNPay 2.1.0 gateway in a box: pay page, IPNs, merchant API and statement.

``create_simulator(options, notify_url=..., clock=...)`` returns an aiohttp application
that plays the bank side for one merchant account (options ``tmn_code`` and
``hash_secret``, as in the hub's bank table; optional ``seed`` for the fault dice,
``fee_basis_points`` for the statement's fee column, default 0, and ``faults``, the knobs
to start with). Mount it under ``/sim/vnpay/`` or serve it alone. The fault knobs, payer
machinery, control routes and statement come from ``banks.simulation``; this module holds
VNPay's protocol only. Routes, relative to its root:

- ``GET  /paymentv2/vpcpay.html`` the pay page; checks the merchant's hash like the gateway
  (error page with code 02 unknown merchant, 03 bad data, 97 bad signature, 01 order exists);
- ``POST /paymentv2/pay`` the pay page's form (``vnp_TxnRef``, ``outcome``): plays the
  payer, sends the IPN, then redirects the browser to ``vnp_ReturnUrl`` with signed results;
- ``POST /merchant_webapi/api/transaction`` querydr (answer signed over 15 fields) and
  refund (13 fields): 91 not found, 93 bad refund amount, 94 duplicate ``vnp_RequestId``,
  95 not refundable, 97 bad checksum;
- the control routes of ``banks.simulation.control``. ``POST /_sim/pay`` takes a
  ``vnp_TxnRef`` or a payment_url. VNPay learns an order only from its pay URL, so a bare
  ``vnp_TxnRef`` must belong to an order the gateway has seen (through its URL or its pay
  page) or come with the ``amount`` paid (the gateway then records the order as if its
  pay URL had been opened); 404 otherwise. Outcomes: ``success``,
  ``insufficient_funds`` (51), ``cancel`` (24), ``timeout`` (11), ``fraud_suspected``
  (07/07, debited), ``pay_twice`` (two successful transactions), ``declined_then_paid``
  (51, then a success), ``late`` and ``abandon``. ``amount`` on a known order makes the
  gateway report another amount (signed correctly).
  The statement holds settled payments only, in the format of ``banks.vnpay.connector``,
  each line naming the terminal (``vnp_TmnCode``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

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
from banks.vnpay import wire
from payhub.domain.clock import Clock, system_clock
from payhub.errors import ConfigError

STATEMENT_HEADER = (
    "vnp_TransactionNo", "vnp_TxnRef", "amount", "status", "pay_date", "fee", "vnp_TmnCode"
)  # fmt: skip
TAMPER_DELTA = 1_000
"""VND added to a tampered IPN's amount."""

# outcome -> the attempts it makes, each (vnp_ResponseCode, vnp_TransactionStatus)
OUTCOMES: dict[str, tuple[tuple[str, str], ...]] = {
    "success": (("00", "00"),),
    "insufficient_funds": (("51", "02"),),
    "cancel": (("24", "02"),),
    "timeout": (("11", "02"),),
    "fraud_suspected": (("07", "07"),),
    "pay_twice": (("00", "00"), ("00", "00")),
    "declined_then_paid": (("51", "02"), ("00", "00")),
}
PAGE_OUTCOMES = (
    ("success", "Pay"),
    ("insufficient_funds", "Pay (insufficient funds)"),
    ("cancel", "Cancel"),
)
_DEBITED = frozenset({"00", "07"})
_PAY_REQUIRED = (
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_Amount",
    "vnp_CurrCode",
    "vnp_TxnRef",
    "vnp_OrderInfo",
    "vnp_ReturnUrl",
    "vnp_IpAddr",
    "vnp_CreateDate",
    "vnp_ExpireDate",
)
_ERROR_TITLE = "Giao dịch không hợp lệ"
_TXN_REF = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass
class Payment:
    """One payer attempt at the gateway, debited or not."""

    transaction_no: str
    response_code: str
    transaction_status: str
    amount: int
    paid_at: datetime
    bank_code: str

    @property
    def settled(self) -> bool:
        return self.response_code == "00" and self.transaction_status == "00"


@dataclass
class Refund:
    transaction_no: str
    transaction_type: str
    amount: int
    refunded_at: datetime


@dataclass
class Order:
    """An order as the merchant signed it in the pay URL, and what happened to it since."""

    params: dict[str, str]
    amount: int
    payments: list[Payment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)

    @property
    def txn_ref(self) -> str:
        return self.params["vnp_TxnRef"]

    @property
    def settled_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.settled), None)

    @property
    def refundable(self) -> int:
        payment = self.settled_payment
        if payment is None:
            return 0
        return payment.amount - sum(r.amount for r in self.refunds)


class Gateway(SimulatedBank[Order]):
    """The gateway's memory and the merchant account it serves."""

    outcomes = tuple(OUTCOMES)

    def __init__(self, *, tmn_code: str, hash_secret: str, **common: Any) -> None:
        super().__init__(**common)
        self.tmn_code = tmn_code
        self.hash_secret = hash_secret
        self.orders: dict[str, Order] = {}
        self.request_ids: set[tuple[str, str]] = set()
        self._last_transaction_no = 14_000_000

    def next_transaction_no(self) -> str:
        self._last_transaction_no += 1
        return str(self._last_transaction_no)

    # --- orders ---------------------------------------------------------------------

    def register(self, params: Mapping[str, str]) -> Order:
        """Learn an order from its pay URL, checking it as the real gateway does."""
        if params.get("vnp_TmnCode") != self.tmn_code:
            raise OrderRejected("02", "Merchant not recognised (vnp_TmnCode)")
        if not wire.verify_query(params, self.hash_secret):
            raise OrderRejected("97", "Invalid signature")
        missing = [name for name in _PAY_REQUIRED if not params.get(name)]
        if missing:
            raise OrderRejected("03", f"Missing {', '.join(missing)}")
        if (params["vnp_Version"], params["vnp_Command"], params["vnp_CurrCode"]) != (
            wire.VERSION,
            "pay",
            wire.CURRENCY,
        ):
            raise OrderRejected("03", "Unsupported version, command or currency")
        try:
            amount = wire.decode_amount(params["vnp_Amount"])
            wire.parse_date(params["vnp_CreateDate"])
            wire.parse_date(params["vnp_ExpireDate"])
        except ValueError as exc:
            raise OrderRejected("03", str(exc)) from exc
        if amount <= 0:
            raise OrderRejected("03", "Amount must be positive")
        signed = {k: v for k, v in params.items() if k.startswith("vnp_")}
        known = self.orders.get(signed["vnp_TxnRef"])
        if known is not None and known.params != signed:
            if known.payments:
                raise OrderRejected("01", "Transaction already exists (vnp_TxnRef)")
            known = None
        if known is None:
            known = self.orders[signed["vnp_TxnRef"]] = Order(params=signed, amount=amount)
        return known

    def resolve(self, reference: str, amount: int | None) -> Order:
        """An order from its pay URL, or a ``vnp_TxnRef`` seen before or paid with ``amount``."""
        if "?" in reference:
            return self.register(dict(parse_qsl(urlsplit(reference).query, keep_blank_values=True)))
        found = self.orders.get(reference)
        if found is not None:
            return found
        if amount is None or not _TXN_REF.fullmatch(reference):
            raise UnknownReference(
                f"VNPay has not seen order {reference!r}: it learns an order from its "
                "payment_url; pass that, open the pay page first, or give the amount paid"
            )
        return self._order_by_reference(reference, amount)

    def _order_by_reference(self, reference: str, amount: int) -> Order:
        """The order a payer pays by its reference alone, as if its pay URL had been opened."""
        now = self.clock()
        params = {
            "vnp_Version": wire.VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": wire.encode_amount(amount),
            "vnp_CurrCode": wire.CURRENCY,
            "vnp_TxnRef": reference,
            "vnp_OrderInfo": f"Thanh toan {reference}",
            "vnp_OrderType": "other",
            "vnp_Locale": "vn",
            "vnp_ReturnUrl": "",
            "vnp_IpAddr": "127.0.0.1",
            "vnp_CreateDate": wire.format_date(now),
            "vnp_ExpireDate": wire.format_date(now + timedelta(minutes=15)),
        }
        order = self.orders[reference] = Order(params=params, amount=amount)
        return order

    def order_reference(self, order: Order) -> str:
        return order.txn_ref

    def pay(self, order: Order, outcome: str, amount: int | None) -> list[Payment]:
        """Record what the payer did; a second success is refused unless asked for."""
        attempts = OUTCOMES[outcome]
        if any(a == ("00", "00") for a in attempts) and order.settled_payment is not None:
            raise OrderRejected("02", "Order already paid")
        now = self.clock()
        expired = now > wire.parse_date(order.params["vnp_ExpireDate"])
        bank_code = order.params.get("vnp_BankCode") or "NCB"
        made = []
        for response_code, transaction_status in attempts:
            if self.faults.enforce_expiry and expired:
                response_code, transaction_status = "11", "02"
            debited = response_code in _DEBITED
            payment = Payment(
                transaction_no=self.next_transaction_no() if debited else "0",
                response_code=response_code,
                transaction_status=transaction_status,
                amount=order.amount if amount is None else amount,
                paid_at=now,
                bank_code=bank_code,
            )
            order.payments.append(payment)
            made.append(payment)
        return made

    async def play(
        self, order: Order, outcome: str, amount: int | None, faults: Faults
    ) -> dict[str, Any]:
        """The payer acts, then the gateway confirms each resulting payment to the hub."""
        report: dict[str, Any] = {"reference": order.txn_ref, "outcome": outcome}
        if outcome == "abandon":
            return report | {"payments": [], "confirmations": []}
        payments = self.pay(order, outcome, amount)
        report["payments"] = [
            {
                "vnp_TransactionNo": p.transaction_no,
                "vnp_ResponseCode": p.response_code,
                "vnp_TransactionStatus": p.transaction_status,
                "amount": p.amount,
                "vnp_PayDate": wire.format_date(p.paid_at),
            }
            for p in payments
        ]
        pending = [self._ipn(self.result_params(order, p)) for p in payments]
        report["confirmations"] = await self.deliver(pending, faults)
        report["return_url"] = self.return_url(order, payments[-1])
        return report

    # --- IPNs and return URLs -------------------------------------------------------

    def result_params(self, order: Order, payment: Payment) -> dict[str, str]:
        """The unsigned IPN / return-URL parameters for one payment."""
        params = {
            "vnp_Amount": wire.encode_amount(payment.amount),
            "vnp_BankCode": payment.bank_code,
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": order.params["vnp_OrderInfo"],
            "vnp_PayDate": wire.format_date(payment.paid_at),
            "vnp_ResponseCode": payment.response_code,
            "vnp_TmnCode": self.tmn_code,
            "vnp_TransactionNo": payment.transaction_no,
            "vnp_TransactionStatus": payment.transaction_status,
            "vnp_TxnRef": order.txn_ref,
        }
        if payment.response_code in _DEBITED:
            params["vnp_BankTranNo"] = f"VNP{payment.transaction_no}"
        return params

    def _ipn(self, params: dict[str, str]) -> PendingConfirmation:
        def build(forged: bool, tampered: bool) -> Outgoing:
            secret = f"not-{self.hash_secret}" if forged else self.hash_secret
            signed = dict(params)
            digest = wire.sign_query(params, secret)
            if tampered:
                raised = wire.decode_amount(params["vnp_Amount"]) + TAMPER_DELTA
                signed["vnp_Amount"] = wire.encode_amount(raised)
            # VNPay sends the params sorted, the hash last.
            query = urlencode([*sorted(signed.items()), (wire.HASH_PARAM, digest)])
            separator = "&" if "?" in self.notify_url else "?"
            return Outgoing("GET", f"{self.notify_url}{separator}{query}")

        return PendingConfirmation(params["vnp_TxnRef"], build)

    def read_answer(self, status: int, body: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = {"http_status": status}
        try:
            data = json.loads(body)
        except ValueError:
            return answer
        if isinstance(data, dict):
            answer.update(RspCode=data.get("RspCode"), Message=data.get("Message"))
        return answer

    def accepted(self, answer: Mapping[str, Any]) -> bool:
        return answer.get("RspCode") in wire.IPN_FINAL_ANSWERS

    def return_url(self, order: Order, payment: Payment) -> str | None:
        base = order.params["vnp_ReturnUrl"]
        if not base:
            return None
        separator = "&" if "?" in base else "?"
        query = wire.signed_query(self.result_params(order, payment), self.hash_secret)
        return f"{base}{separator}{query}"

    # --- merchant API ---------------------------------------------------------------

    def api_answer(
        self, command: str, code: str, order: Order | None = None, **values: str
    ) -> dict[str, str]:
        """A signed merchant-API answer; fields the answer does not carry are empty."""
        signed_fields = wire.response_fields(command)
        answer = dict.fromkeys(signed_fields, "")
        answer.update(
            vnp_ResponseId=uuid.uuid4().hex,
            vnp_Command=command,
            vnp_ResponseCode=code,
            vnp_Message=wire.API_CODES[code],
            vnp_TmnCode=self.tmn_code,
        )
        if order is not None:
            answer.update(vnp_TxnRef=order.txn_ref, vnp_OrderInfo=order.params["vnp_OrderInfo"])
        answer.update(values)
        answer[wire.HASH_PARAM] = wire.sign_fields(answer, signed_fields, self.hash_secret)
        return answer

    def statement(self, day: date) -> StatementFile:
        settlements = (
            Settlement(
                transaction_id=payment.transaction_no,
                reference=order.txn_ref,
                amount=payment.amount,
                status=payment.transaction_status,
                at=payment.paid_at,
                fee=self.fee(payment.amount),
            )
            for order in self.orders.values()
            for payment in order.payments
            if payment.settled
        )
        return StatementFile(
            text=daily_csv(STATEMENT_HEADER, settlements, day, self.tmn_code),
            content_type="text/csv",
            filename=f"vnpay-{day:%Y%m%d}.csv",
        )


GATEWAY = web.AppKey("vnpay_gateway", Gateway)


def create_simulator(
    options: Mapping[str, Any], *, notify_url: str, clock: Clock | None = None
) -> web.Application:
    """The simulator app for one merchant account, sending its IPNs to ``notify_url``."""
    tmn_code = options.get("tmn_code")
    hash_secret = options.get("hash_secret")
    if not (
        isinstance(tmn_code, str) and tmn_code and isinstance(hash_secret, str) and hash_secret
    ):
        raise ConfigError("the VNPay simulator needs tmn_code and hash_secret")
    fee = options.get("fee_basis_points", 0)
    if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
        raise ConfigError("fee_basis_points must be a whole number >= 0")
    try:
        faults = Faults.from_json(options.get("faults", {}))
    except ValueError as exc:
        raise ConfigError(f"VNPay simulator faults: {exc}") from exc
    gateway = Gateway(
        tmn_code=tmn_code,
        hash_secret=hash_secret,
        notify_url=notify_url,
        clock=clock or system_clock,
        seed=options.get("seed"),
        faults=faults,
        fee_basis_points=fee,
    )
    app = simulator_app(gateway)
    app[GATEWAY] = gateway
    app.router.add_get(wire.PAY_PATH, pay_page)
    app.router.add_post("/paymentv2/pay", pay_form)
    app.router.add_post(wire.API_PATH, merchant_api)
    return app


# --- the payer's side ---------------------------------------------------------------


async def pay_page(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    try:
        order = gateway.register(dict(request.query))
    except OrderRejected as exc:
        return pages.page(_ERROR_TITLE, pages.error(exc.code, exc.message), status=400)
    p = order.params
    rows = [
        ("Merchant", p["vnp_TmnCode"]),
        ("Order", p["vnp_TxnRef"]),
        ("Description", p["vnp_OrderInfo"]),
        ("Amount", pages.vnd(order.amount)),
        ("Pay before", pages.deadline(wire.parse_date(p["vnp_ExpireDate"]))),
    ]
    body = pages.details(rows) + pages.outcome_form(
        "pay", {"vnp_TxnRef": order.txn_ref}, PAGE_OUTCOMES
    )
    return pages.page("VNPay sandbox (simulator)", body)


async def pay_form(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    form = await request.post()
    txn_ref, outcome = form.get("vnp_TxnRef"), form.get("outcome")
    if not isinstance(txn_ref, str) or outcome not in dict(PAGE_OUTCOMES):
        return pages.page(_ERROR_TITLE, "<p>Bad form.</p>", status=400)
    order = gateway.orders.get(txn_ref)
    if order is None:
        return pages.page(_ERROR_TITLE, "<p>Order not found.</p>", status=404)
    try:
        report = await gateway.play(order, str(outcome), None, gateway.faults)
    except OrderRejected as exc:
        return pages.page(_ERROR_TITLE, pages.error(exc.code, exc.message), status=409)
    if not report["return_url"]:
        return pages.page("Giao dịch thành công", "<p>Payment recorded.</p>")
    raise web.HTTPSeeOther(report["return_url"])


# --- the merchant API ---------------------------------------------------------------


async def merchant_api(request: web.Request) -> web.StreamResponse:
    """querydr and refund, behind the API faults."""
    gateway = request.app[GATEWAY]
    failed = await gateway.api_fault(request)
    if failed is not None:
        return failed
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response(gateway.api_answer("", "03"))
    command = body.get("vnp_Command")
    signed_fields = wire.REQUEST_FIELDS.get(command) if isinstance(command, str) else None
    if not isinstance(command, str) or signed_fields is None:
        return web.json_response(gateway.api_answer(str(command or ""), "03"))
    if body.get("vnp_TmnCode") != gateway.tmn_code:
        return web.json_response(gateway.api_answer(command, "02"))
    if not wire.verify_fields(body, signed_fields, gateway.hash_secret):
        return web.json_response(gateway.api_answer(command, wire.API_BAD_CHECKSUM))
    request_id = body.get("vnp_RequestId")
    if not isinstance(request_id, str) or not request_id:
        return web.json_response(gateway.api_answer(command, "03"))
    key = (request_id, str(body.get("vnp_CreateDate", ""))[:8])
    if key in gateway.request_ids:
        return web.json_response(gateway.api_answer(command, wire.API_DUPLICATE_REQUEST))
    gateway.request_ids.add(key)
    order = gateway.orders.get(str(body.get("vnp_TxnRef", "")))
    if order is None:
        return web.json_response(gateway.api_answer(command, wire.API_NOT_FOUND))
    if command == "querydr":
        return web.json_response(_querydr(gateway, order))
    answer = _refund(gateway, order, body)
    if await gateway.answer_lost():  # refunded (or refused), and the merchant never hears
        return web.Response(status=503)
    return web.json_response(answer)


def _querydr(gateway: Gateway, order: Order) -> dict[str, str]:
    """The order's state: its settled payment, else its last attempt, else not completed."""
    payment = order.settled_payment or (order.payments[-1] if order.payments else None)
    if payment is None:
        return gateway.api_answer(
            "querydr",
            "00",
            order,
            vnp_Amount=order.params["vnp_Amount"],
            vnp_TransactionNo="0",
            vnp_TransactionType=wire.TRANSACTION_TYPE_PAYMENT,
            vnp_TransactionStatus="01",
        )
    return gateway.api_answer(
        "querydr",
        "00",
        order,
        vnp_Amount=wire.encode_amount(payment.amount),
        vnp_BankCode=payment.bank_code,
        vnp_PayDate=wire.format_date(payment.paid_at),
        vnp_TransactionNo=payment.transaction_no,
        vnp_TransactionType=wire.TRANSACTION_TYPE_PAYMENT,
        vnp_TransactionStatus=payment.transaction_status,
    )


def _refund(gateway: Gateway, order: Order, body: Mapping[str, Any]) -> dict[str, str]:
    payment = order.settled_payment
    if payment is None:
        return gateway.api_answer("refund", "95", order)
    transaction_no = str(body.get("vnp_TransactionNo") or "")
    if transaction_no and transaction_no != payment.transaction_no:
        return gateway.api_answer("refund", wire.API_NOT_FOUND, order)
    transaction_type = body.get("vnp_TransactionType")
    try:
        amount = wire.decode_amount(str(body.get("vnp_Amount", "")))
    except ValueError:
        return gateway.api_answer("refund", "03", order)
    if transaction_type not in (wire.REFUND_FULL, wire.REFUND_PARTIAL):
        return gateway.api_answer("refund", "03", order)
    full_ok = transaction_type == wire.REFUND_FULL and amount == payment.amount == order.refundable
    partial_ok = transaction_type == wire.REFUND_PARTIAL and 0 < amount <= order.refundable
    if not (full_ok or partial_ok):
        return gateway.api_answer("refund", "93", order)
    refund = Refund(
        transaction_no=gateway.next_transaction_no(),
        transaction_type=transaction_type,
        amount=amount,
        refunded_at=gateway.clock(),
    )
    order.refunds.append(refund)
    return gateway.api_answer(
        "refund",
        "00",
        order,
        vnp_Amount=wire.encode_amount(amount),
        vnp_BankCode=payment.bank_code,
        vnp_PayDate=wire.format_date(refund.refunded_at),
        vnp_TransactionNo=refund.transaction_no,
        vnp_TransactionType=transaction_type,
        vnp_TransactionStatus="00",
    )
