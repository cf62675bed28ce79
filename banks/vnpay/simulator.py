"""A VNPay 2.1.0 gateway in a box: pay page, IPNs, merchant API, statement and fault knobs.

``create_simulator(options, notify_url=..., clock=...)`` returns an aiohttp application
that plays the bank side for one merchant account (options ``tmn_code`` and
``hash_secret``, as in the hub's bank table; optional ``seed`` for the fault dice,
``fee_basis_points`` for the statement's fee column, default 0, and ``faults``, the knobs
to start with). Mount it under ``/sim/vnpay/`` or serve it alone. Routes, relative to its root:

- ``GET  /paymentv2/vpcpay.html`` the pay page; checks the merchant's hash like the gateway
  (error page with code 02 unknown merchant, 03 bad data, 97 bad signature, 01 order exists);
- ``POST /paymentv2/pay`` the pay page's form (``vnp_TxnRef``, ``outcome``): plays the
  payer, sends the IPN, then redirects the browser to ``vnp_ReturnUrl`` with signed results;
- ``POST /merchant_webapi/api/transaction`` querydr and refund (91 not found, 93 bad refund
  amount, 94 duplicate ``vnp_RequestId``, 95 not refundable, 97 bad checksum);
- ``POST /_sim/pay`` ``{"reference": vnp_TxnRef | payment_url, "outcome": ..., "amount":
  VND, "delay_seconds": for "late", "faults": knobs for this payer only}``; outcomes:
  ``success``, ``insufficient_funds`` (51), ``cancel`` (24), ``timeout`` (11),
  ``fraud_suspected`` (07/07, debited), ``pay_twice`` (two successful transactions),
  ``late`` (success after ``delay_seconds``, in the background, answers 202) and
  ``abandon`` (opens the page, never pays). A bare ``vnp_TxnRef`` must belong to an order
  the simulator has seen (404 otherwise); a payment_url registers the order. ``amount``
  makes the gateway report another amount (signed correctly). Answers what it did, with
  the hub's ``RspCode`` answers;
- ``PUT /_sim/faults`` replaces all knobs (omitted ones return to their defaults),
  ``GET /_sim/faults`` shows them;
- ``GET /_sim/statement?date=YYYY-MM-DD`` the CSV of that Asia/Ho_Chi_Minh business day
  (format in ``banks.vnpay.connector``): successful payments only;
- ``GET /_sim/confirmations`` every IPN delivery attempt so far, for tests and the demo.

Fault knobs (fractions are probabilities in [0, 1], ``true``/``false`` count as 1/0):

==========================  =======  =============================================================
knob                        default  effect
==========================  =======  =============================================================
``latency_ms``              0        merchant-API delay: milliseconds, or ``[min, max]`` uniform
``error_rate``              0        fraction of merchant-API requests answered HTTP 503
``timeout_rate``            0        fraction of merchant-API requests that hang ``hang_seconds``
``hang_seconds``            30       how long a hung request hangs (at most 60; ends on shutdown)
``reset_rate``              0        fraction of merchant-API connections dropped without answer
``lose_confirmation``       0        fraction of IPNs never sent (nor retried)
``duplicate_confirmation``  0        extra copies of every IPN
``concurrent_duplicates``   false    send an IPN and its copies at the same time
``tamper_amount``           0        fraction of IPNs whose amount is raised after signing
``bad_signature``           0        fraction of IPNs signed with a wrong secret
``ipn_retries``             10       resends of an IPN not answered 00/02, in the background
``ipn_retry_seconds``       300      spacing of those resends
``ipn_timeout_seconds``     15       how long the gateway waits for the hub's IPN answer
``enforce_expiry``          false    payments after ``vnp_ExpireDate`` fail with code 11
==========================  =======  =============================================================

Pay dates and the statement's business day come from the injectable clock; delays are real
time, so tests set them small.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from banks.vnpay import wire
from payhub.domain.clock import Clock, system_clock, to_vietnam
from payhub.errors import ConfigError

STATEMENT_HEADER = ("vnp_TransactionNo", "vnp_TxnRef", "amount", "status", "pay_date", "fee")
MAX_HANG_SECONDS = 60.0
TAMPER_DELTA = 1_000
"""VND added to a tampered IPN's amount."""

# outcome -> (vnp_ResponseCode, vnp_TransactionStatus)
OUTCOMES: dict[str, tuple[str, str]] = {
    "success": ("00", "00"),
    "insufficient_funds": ("51", "02"),
    "cancel": ("24", "02"),
    "timeout": ("11", "02"),
    "fraud_suspected": ("07", "07"),
    "pay_twice": ("00", "00"),
}
CONTROL_OUTCOMES = (*OUTCOMES, "late", "abandon")
PAGE_OUTCOMES = ("success", "insufficient_funds", "cancel")
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


@dataclass(frozen=True)
class Faults:
    """The fault knobs; see the module docstring."""

    latency_ms: tuple[int, int] = (0, 0)
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    reset_rate: float = 0.0
    lose_confirmation: float = 0.0
    duplicate_confirmation: int = 0
    concurrent_duplicates: bool = False
    tamper_amount: float = 0.0
    bad_signature: float = 0.0
    ipn_retries: int = 10
    ipn_retry_seconds: float = 300.0
    ipn_timeout_seconds: float = 15.0
    enforce_expiry: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: Faults | None = None) -> Faults:
        """Knobs from JSON over ``base`` (defaults when ``None``); ``ValueError`` names the bad."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault knobs {unknown}; known: {sorted(known)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            changes[name] = _KNOB_READERS[name](name, value)
        return replace(base or cls(), **changes)

    def to_json(self) -> dict[str, Any]:
        shown = asdict(self)
        low, high = self.latency_ms
        shown["latency_ms"] = low if low == high else [low, high]
        return shown


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction between 0 and 1")
    return float(value)


def _count(limit: int) -> Callable[[str, Any], int]:
    def read(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{name} must be a whole number from 0 to {limit}")
        return value

    return read


def _seconds(limit: float) -> Callable[[str, Any], float]:
    def read(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number of seconds")
        if not 0 <= value <= limit:
            raise ValueError(f"{name} must be between 0 and {limit} seconds")
        return float(value)

    return read


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _latency(name: str, value: Any) -> tuple[int, int]:
    read = _count(60_000)
    if isinstance(value, list) and len(value) == 2:
        low, high = read(name, value[0]), read(name, value[1])
        if low > high:
            raise ValueError(f"{name} must be [min, max] with min <= max")
        return low, high
    fixed = read(name, value)
    return fixed, fixed


_KNOB_READERS: dict[str, Callable[[str, Any], Any]] = {
    "latency_ms": _latency,
    "error_rate": _fraction,
    "timeout_rate": _fraction,
    "hang_seconds": _seconds(MAX_HANG_SECONDS),
    "reset_rate": _fraction,
    "lose_confirmation": _fraction,
    "duplicate_confirmation": _count(100),
    "concurrent_duplicates": _flag,
    "tamper_amount": _fraction,
    "bad_signature": _fraction,
    "ipn_retries": _count(100),
    "ipn_retry_seconds": _seconds(86_400),
    "ipn_timeout_seconds": _seconds(60),
    "enforce_expiry": _flag,
}


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


class OrderRejected(Exception):
    """The gateway refuses a pay URL; ``code`` is what its error page shows."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Gateway:
    """The gateway's memory and the merchant account it serves."""

    def __init__(
        self,
        *,
        tmn_code: str,
        hash_secret: str,
        notify_url: str,
        clock: Clock,
        rng: random.Random,
        faults: Faults,
        fee_basis_points: int,
    ) -> None:
        self.tmn_code = tmn_code
        self.hash_secret = hash_secret
        self.notify_url = notify_url
        self.clock = clock
        self.rng = rng
        self.faults = faults
        self.fee_basis_points = fee_basis_points
        self.orders: dict[str, Order] = {}
        self.request_ids: set[tuple[str, str]] = set()
        self.confirmations: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = asyncio.Event()
        self._last_transaction_no = 14_000_000

    def roll(self, fraction: float) -> bool:
        return fraction > 0 and self.rng.random() < fraction

    def next_transaction_no(self) -> str:
        self._last_transaction_no += 1
        return str(self._last_transaction_no)

    async def pause(self, seconds: float) -> bool:
        """Sleep, but wake at once when the app shuts down; ``True`` when it did."""
        if self.closing.is_set():
            return True
        try:
            await asyncio.wait_for(self.closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run in the background, owned by the app so that cleanup can cancel it."""
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        self.closing.set()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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

    def pay(self, order: Order, outcome: str, amount: int | None) -> list[Payment]:
        """Record what the payer did; a second success is refused unless asked for."""
        if outcome in ("success", "pay_twice") and order.settled_payment is not None:
            raise OrderRejected("02", "Order already paid")
        response_code, transaction_status = OUTCOMES[outcome]
        now = self.clock()
        if self.faults.enforce_expiry and now > wire.parse_date(order.params["vnp_ExpireDate"]):
            response_code, transaction_status = "11", "02"
        bank_code = order.params.get("vnp_BankCode") or "NCB"
        made = []
        for _ in range(2 if outcome == "pay_twice" else 1):
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

    def return_url(self, order: Order, payment: Payment) -> str:
        base = order.params["vnp_ReturnUrl"]
        separator = "&" if "?" in base else "?"
        query = wire.signed_query(self.result_params(order, payment), self.hash_secret)
        return f"{base}{separator}{query}"

    def api_answer(
        self, command: str, code: str, order: Order | None = None, **values: str
    ) -> dict[str, str]:
        """A signed merchant-API answer; fields the answer does not carry are empty."""
        answer = dict.fromkeys(wire.RESPONSE_FIELDS, "")
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
        answer[wire.HASH_PARAM] = wire.sign_fields(answer, wire.RESPONSE_FIELDS, self.hash_secret)
        return answer

    def statement(self, day: date) -> str:
        """The day's settled payments, in pay-time order, as the statement CSV."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_HEADER)
        settled = [
            (payment, order)
            for order in self.orders.values()
            for payment in order.payments
            if payment.settled and to_vietnam(payment.paid_at).date() == day
        ]
        settled.sort(key=lambda item: (item[0].paid_at, item[0].transaction_no))
        for payment, order in settled:
            fee = payment.amount * self.fee_basis_points // 10_000
            writer.writerow(
                (
                    payment.transaction_no,
                    order.txn_ref,
                    payment.amount,
                    payment.transaction_status,
                    wire.format_date(payment.paid_at),
                    fee,
                )
            )
        return out.getvalue()


GATEWAY = web.AppKey("vnpay_gateway", Gateway)
HTTP = web.AppKey("vnpay_gateway_http", aiohttp.ClientSession)


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
    app = web.Application()
    app[GATEWAY] = Gateway(
        tmn_code=tmn_code,
        hash_secret=hash_secret,
        notify_url=notify_url,
        clock=clock or system_clock,
        rng=random.Random(options.get("seed")),
        faults=faults,
        fee_basis_points=fee,
    )
    app.cleanup_ctx.append(_http_session)
    app.on_shutdown.append(_wake_sleepers)
    app.router.add_get(wire.PAY_PATH, pay_page)
    app.router.add_post("/paymentv2/pay", pay_form)
    app.router.add_post(wire.API_PATH, merchant_api)
    app.router.add_post("/_sim/pay", control_pay)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_put("/_sim/faults", put_faults)
    app.router.add_get("/_sim/statement", statement)
    app.router.add_get("/_sim/confirmations", confirmations)
    return app


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    """The gateway's client for IPNs; background IPN tasks end before it closes."""
    async with aiohttp.ClientSession() as session:
        app[HTTP] = session
        yield
        await app[GATEWAY].stop()


async def _wake_sleepers(app: web.Application) -> None:
    app[GATEWAY].closing.set()


# --- the payer's side ---------------------------------------------------------------


async def pay_page(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    try:
        order = gateway.register(dict(request.query))
    except OrderRejected as exc:
        return _page("Giao dịch không hợp lệ", _error_html(exc), status=400)
    p = order.params
    rows = [
        ("Merchant", p["vnp_TmnCode"]),
        ("Order", p["vnp_TxnRef"]),
        ("Description", p["vnp_OrderInfo"]),
        ("Amount", f"{order.amount:,} VND".replace(",", ".")),
        ("Pay before", p["vnp_ExpireDate"]),
    ]
    table = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    buttons = "".join(
        f'<button type="submit" name="outcome" value="{html.escape(outcome)}">'
        f"{html.escape(label)}</button>"
        for outcome, label in (
            ("success", "Pay"),
            ("insufficient_funds", "Pay (insufficient funds)"),
            ("cancel", "Cancel"),
        )
    )
    body = (
        f"<table>{table}</table>"
        # Relative action: the page may be mounted under any prefix.
        f'<form method="post" action="pay">'
        f'<input type="hidden" name="vnp_TxnRef" value="{html.escape(order.txn_ref)}">'
        f"{buttons}</form>"
    )
    return _page("VNPay sandbox (simulator)", body)


async def pay_form(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    form = await request.post()
    txn_ref, outcome = form.get("vnp_TxnRef"), form.get("outcome")
    if not isinstance(txn_ref, str) or not isinstance(outcome, str) or outcome not in PAGE_OUTCOMES:
        return _page("Giao dịch không hợp lệ", "<p>Bad form.</p>", status=400)
    order = gateway.orders.get(txn_ref)
    if order is None:
        return _page("Giao dịch không hợp lệ", "<p>Order not found.</p>", status=404)
    try:
        report = await _play(request.app, order, outcome, None, gateway.faults)
    except OrderRejected as exc:
        return _page("Giao dịch không hợp lệ", _error_html(exc), status=409)
    raise web.HTTPSeeOther(report["return_url"])


def _error_html(exc: OrderRejected) -> str:
    return f"<p>Code {html.escape(exc.code)}: {html.escape(exc.message)}</p>"


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html")


async def _play(
    app: web.Application, order: Order, outcome: str, amount: int | None, faults: Faults
) -> dict[str, Any]:
    """The payer acts, then the gateway confirms each resulting payment to the hub."""
    gateway = app[GATEWAY]
    report: dict[str, Any] = {"reference": order.txn_ref, "outcome": outcome}
    if outcome == "abandon":
        return report | {"payments": [], "confirmations": []}
    payments = gateway.pay(order, outcome, amount)
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
    report["confirmations"] = [
        await _confirm(app, gateway.result_params(order, p), faults) for p in payments
    ]
    report["return_url"] = gateway.return_url(order, payments[-1])
    return report


async def _confirm(app: web.Application, params: dict[str, str], faults: Faults) -> dict[str, Any]:
    """Send one IPN (and its copies) with the faults rolled; schedule resends if unanswered."""
    gateway = app[GATEWAY]
    entry: dict[str, Any] = {"reference": params["vnp_TxnRef"], "attempt": 0}
    if gateway.roll(faults.lose_confirmation):
        entry |= {"lost": True, "answers": []}
        gateway.confirmations.append(entry)
        return entry
    bad_signature = gateway.roll(faults.bad_signature)
    secret = f"not-{gateway.hash_secret}" if bad_signature else gateway.hash_secret
    signed = dict(params)
    signed[wire.HASH_PARAM] = wire.sign_query(params, secret)
    tampered = gateway.roll(faults.tamper_amount)
    if tampered:
        tampered_amount = wire.decode_amount(params["vnp_Amount"]) + TAMPER_DELTA
        signed["vnp_Amount"] = wire.encode_amount(tampered_amount)
    separator = "&" if "?" in gateway.notify_url else "?"
    # VNPay sends the params sorted, the hash last.
    ordered = sorted((k, v) for k, v in signed.items() if k != wire.HASH_PARAM)
    query = urlencode([*ordered, (wire.HASH_PARAM, signed[wire.HASH_PARAM])])
    url = f"{gateway.notify_url}{separator}{query}"
    copies = 1 + faults.duplicate_confirmation
    if faults.concurrent_duplicates:
        answers = list(await asyncio.gather(*(_send_ipn(app, url, faults) for _ in range(copies))))
    else:
        answers = [await _send_ipn(app, url, faults) for _ in range(copies)]
    done = any(answer.get("RspCode") in wire.IPN_FINAL_ANSWERS for answer in answers)
    retry = not done and faults.ipn_retries > 0
    entry |= {
        "lost": False,
        "bad_signature": bad_signature,
        "tampered": tampered,
        "answers": answers,
        "retry_scheduled": retry,
    }
    gateway.confirmations.append(entry)
    if retry:
        gateway.spawn(_resend_ipn(app, url, params["vnp_TxnRef"], faults))
    return entry


async def _send_ipn(app: web.Application, url: str, faults: Faults) -> dict[str, Any]:
    """One server-to-server GET; what the hub answered, or why it did not."""
    timeout = aiohttp.ClientTimeout(total=faults.ipn_timeout_seconds)
    try:
        async with app[HTTP].get(URL(url, encoded=True), timeout=timeout) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return {"error": type(exc).__name__}
    answer: dict[str, Any] = {"http_status": status}
    try:
        data = json.loads(text)
    except ValueError:
        return answer
    if isinstance(data, dict):
        answer.update(RspCode=data.get("RspCode"), Message=data.get("Message"))
    return answer


async def _resend_ipn(app: web.Application, url: str, reference: str, faults: Faults) -> None:
    """VNPay's retry schedule: resend until answered 00/02 or the retries run out."""
    gateway = app[GATEWAY]
    for attempt in range(1, faults.ipn_retries + 1):
        if await gateway.pause(faults.ipn_retry_seconds):
            return
        answer = await _send_ipn(app, url, faults)
        gateway.confirmations.append(
            {"reference": reference, "attempt": attempt, "lost": False, "answers": [answer]}
        )
        if answer.get("RspCode") in wire.IPN_FINAL_ANSWERS:
            return


async def _pay_later(
    app: web.Application, order: Order, delay: float, amount: int | None, faults: Faults
) -> None:
    if await app[GATEWAY].pause(delay):
        return
    try:
        await _play(app, order, "success", amount, faults)
    except OrderRejected:
        return


# --- the merchant API ---------------------------------------------------------------


async def merchant_api(request: web.Request) -> web.Response:
    """querydr and refund, behind the API faults."""
    gateway = request.app[GATEWAY]
    faults = gateway.faults
    low, high = faults.latency_ms
    if high and await gateway.pause(gateway.rng.randint(low, high) / 1000):
        return web.Response(status=503)
    if gateway.roll(faults.reset_rate) and request.transport is not None:
        request.transport.abort()
        return web.Response(status=503)
    if gateway.roll(faults.error_rate):
        return web.json_response({"error": "service unavailable"}, status=503)
    if gateway.roll(faults.timeout_rate):
        await gateway.pause(faults.hang_seconds)
        return web.Response(status=503)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response(gateway.api_answer("", "03"))
    command = body.get("vnp_Command")
    signed_fields = wire.REQUEST_FIELDS.get(command) if isinstance(command, str) else None
    if command is None or signed_fields is None:
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
    return web.json_response(_refund(gateway, order, body))


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


# --- simulator control --------------------------------------------------------------


def _problem(message: str, status: int = 400, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def control_pay(request: web.Request) -> web.Response:
    app = request.app
    gateway = app[GATEWAY]
    try:
        body = await request.json()
    except ValueError:
        return _problem("body must be JSON")
    if not isinstance(body, dict):
        return _problem("body must be a JSON object")
    reference, outcome = body.get("reference"), body.get("outcome", "success")
    if not isinstance(reference, str) or not reference:
        return _problem("reference must be a vnp_TxnRef or a payment_url")
    if outcome not in CONTROL_OUTCOMES:
        return _problem(f"outcome must be one of {list(CONTROL_OUTCOMES)}")
    amount = body.get("amount")
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0
    ):
        return _problem("amount must be a positive whole number of VND")
    try:
        faults = Faults.from_json(body.get("faults") or {}, base=gateway.faults)
    except (ValueError, TypeError) as exc:
        return _problem(str(exc))
    if "?" in reference:
        params = dict(parse_qsl(urlsplit(reference).query, keep_blank_values=True))
        try:
            order = gateway.register(params)
        except OrderRejected as exc:
            return _problem(exc.message, code=exc.code)
    else:
        found = gateway.orders.get(reference)
        if found is None:
            return _problem(f"no order {reference!r}; pass the payment_url", status=404)
        order = found
    if outcome == "late":
        delay = body.get("delay_seconds", 1)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600:
            return _problem("delay_seconds must be between 0 and 3600")
        gateway.spawn(_pay_later(app, order, float(delay), amount, faults))
        return web.json_response(
            {"reference": order.txn_ref, "outcome": "late", "delay_seconds": delay}, status=202
        )
    try:
        report = await _play(app, order, outcome, amount, faults)
    except OrderRejected as exc:
        return _problem(exc.message, status=409, code=exc.code)
    return web.json_response(report)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].faults.to_json())


async def put_faults(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    try:
        body = await request.json()
    except ValueError:
        return _problem("body must be JSON")
    if not isinstance(body, dict):
        return _problem("body must be a JSON object of fault knobs")
    try:
        gateway.faults = Faults.from_json(body)
    except ValueError as exc:
        return _problem(str(exc))
    return web.json_response(gateway.faults.to_json())


async def statement(request: web.Request) -> web.Response:
    try:
        day = date.fromisoformat(request.query.get("date", ""))
    except ValueError:
        return _problem("date must be YYYY-MM-DD")
    return web.Response(
        text=request.app[GATEWAY].statement(day),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="vnpay-{day:%Y%m%d}.csv"'},
    )


async def confirmations(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].confirmations)
