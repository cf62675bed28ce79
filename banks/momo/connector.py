"""The hub's side of MoMo v2: captureWallet create, IPN, query, refunds and the statement.

Options (the bank's TOML table):

- ``partner_code``, ``access_key`` and ``secret_key``: the merchant account at MoMo;
- ``base_url``: the gateway root, e.g. ``https://test-payment.momo.vn`` or
  ``http://127.0.0.1:8080/sim/momo``; the API is ``{base_url}/v2/gateway/api/…``;
- optional ``lang`` (``vi``/``en``, default ``vi``) and ``timeout_seconds`` for API
  calls (default 10).

Result codes (BANKS.md): ``0`` is a success, ``9000``/``1000``/``7000``/``7002``/``8000``
are not final (a pending confirmation that changes nothing), other payment codes are
final failures, and ``10``–``13``, ``20``–``22``, ``40``–``47``, ``98``, ``99`` are about
the API request: a query answering one raises (``BankUnavailable`` when worth retrying,
``BankAnswerInvalid`` otherwise) and so changes no payment.

Statement CSV (one file per business day, Asia/Ho_Chi_Minh, UTF-8, optional BOM), the
shape of VNPay's, read line by line by ``payhub.reconcile.csv_reader`` (``momo-csv``)::

    partnerCode,transId,orderId,amount,resultCode,pay_date,fee
    MOMOPAYHUB,3100000001,PH20261128000001,25500,0,20261128100512,0
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
import structlog

from banks.momo import wire
from payhub.connectors.port import (
    BankAnswer,
    BankConnector,
    Confirmation,
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
    PlacedOrder,
    RefundRequest,
    RefundResult,
)
from payhub.errors import (
    BankAnswerInvalid,
    BankUnavailable,
    ConfigError,
    ConfirmationMalformed,
    ConfirmationSignatureInvalid,
)

log = structlog.get_logger(__name__)

LANGS = ("vi", "en")
ORDER_INFO_MAX_LENGTH = 255
_IPN_STRINGS = ("partnerCode", "orderId", "requestId", "orderInfo", "orderType", "message")
_IPN_OPTIONAL_STRINGS = ("payType", "extraData")

_ANSWERS: dict[ConfirmationOutcome, int] = {
    # MoMo stops sending once answered 204; anything else it may send again.
    ConfirmationOutcome.APPLIED: 204,
    ConfirmationOutcome.ALREADY_APPLIED: 204,
    ConfirmationOutcome.IGNORED: 204,
    ConfirmationOutcome.UNKNOWN_ORDER: 404,
    ConfirmationOutcome.AMOUNT_MISMATCH: 400,
    ConfirmationOutcome.SIGNATURE_INVALID: 400,
    ConfirmationOutcome.MALFORMED: 400,
    ConfirmationOutcome.ERROR: 503,
}


@dataclass(frozen=True)
class MomoSettings:
    """A MoMo merchant account as configured; built only from options that passed checks."""

    partner_code: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    base_url: str
    lang: str = "vi"
    timeout_seconds: float = 10.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MomoSettings:
        problems = MomoConnector.check_options(options)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            partner_code=options["partner_code"],
            access_key=options["access_key"],
            secret_key=options["secret_key"],
            base_url=options["base_url"].rstrip("/"),
            lang=options.get("lang", "vi"),
            timeout_seconds=float(options.get("timeout_seconds", 10)),
        )


class MomoConnector(BankConnector):
    """MoMo's wallet: the hub creates the order by API, the payer pays in the app."""

    protocol: ClassVar[str] = "momo"
    statement_format: ClassVar[str | None] = "momo-csv"
    min_amount: ClassVar[int] = wire.MIN_AMOUNT
    max_amount: ClassVar[int] = wire.MAX_AMOUNT

    def __init__(self, bank: str, options: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(bank, options, context)
        self.settings = MomoSettings.from_options(options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        for name in ("partner_code", "access_key", "secret_key"):
            value = options.get(name)
            if not (isinstance(value, str) and value.strip()):
                problems.append(f"{name} must be a non-empty string")
        base_url = options.get("base_url")
        if not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
            problems.append("base_url must be an http(s) URL, e.g. https://test-payment.momo.vn")
        if options.get("lang", "vi") not in LANGS:
            problems.append(f"lang must be one of {', '.join(LANGS)}")
        timeout = options.get("timeout_seconds", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            problems.append("timeout_seconds must be a positive number")
        return problems

    @classmethod
    def statement_account(cls, options: Mapping[str, Any]) -> str | None:
        """The statement's ``partnerCode`` column names the merchant it was made for."""
        partner_code = options.get("partner_code")
        return partner_code if isinstance(partner_code, str) else None

    @classmethod
    def demo_options(cls, simulator_url: str) -> dict[str, Any]:
        """A fresh merchant account at the simulator: random partner code and keys."""
        return {
            "partner_code": "MOMO" + secrets.token_hex(4).upper(),
            "access_key": secrets.token_hex(8),
            "secret_key": secrets.token_hex(16),
            "base_url": simulator_url,
        }

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        """captureWallet create; MoMo answers the payer's ``payUrl``."""
        if not wire.is_order_id(order.bank_reference):
            raise BankAnswerInvalid(f"MoMo orderId {order.bank_reference!r} is not allowed")
        body: dict[str, Any] = {
            "partnerCode": self.settings.partner_code,
            "requestId": uuid.uuid4().hex,
            "amount": order.amount,
            "orderId": order.bank_reference,
            "orderInfo": order.order_info[:ORDER_INFO_MAX_LENGTH]
            or f"Thanh toan {order.bank_reference}",
            "redirectUrl": order.return_url,
            "ipnUrl": self.context.notify_url,
            "requestType": wire.REQUEST_TYPE,
            "extraData": wire.encode_extra_data({"payment_id": order.payment_id}),
            "lang": self.settings.lang,
            # Not signed; MoMo's payUrl otherwise stays open 100 minutes, past the hub's
            # own deadline. Rounded up: the payer is never cut short.
            "orderExpireTime": _minutes_rounded_up(order.expires_at - order.created_at),
        }
        answer = await self._call(wire.CREATE_PATH, body, wire.CREATE_FIELDS)
        code = answer["resultCode"]
        if code != wire.SUCCESS:
            raise _refusal("create", code, answer)
        pay_url = answer.get("payUrl")
        if not isinstance(pay_url, str) or not pay_url.startswith(("http://", "https://")):
            raise BankAnswerInvalid("MoMo create: no payUrl")
        if answer.get("orderId") != order.bank_reference:
            raise BankAnswerInvalid("MoMo create: answer is about another order")
        deeplink = answer.get("deeplink")
        return PlacedOrder(
            payment_url=pay_url,
            bank_order_id=deeplink if isinstance(deeplink, str) and deeplink else None,
        )

    def parse_confirmation(self, message: InboundMessage) -> Sequence[Confirmation]:
        """An IPN speaks of exactly one order."""
        return (self.read_ipn(message),)

    def read_ipn(self, message: InboundMessage) -> Confirmation:
        """Read an IPN (POST JSON); the signature is checked before any field is trusted."""
        try:
            body = json.loads(message.body)
        except ValueError as exc:
            raise ConfirmationMalformed("MoMo IPN is not JSON") from exc
        if not isinstance(body, dict):
            raise ConfirmationMalformed("MoMo IPN is not a JSON object")
        for name in wire.INTEGER_FIELDS:
            if not wire.is_integer(body.get(name)):
                raise ConfirmationMalformed(f"MoMo IPN {name} must be a JSON integer")
        if not wire.verify(
            body, wire.IPN_FIELDS, self.settings.access_key, self.settings.secret_key
        ):
            raise ConfirmationSignatureInvalid("MoMo IPN signature missing or wrong")
        for name in _IPN_STRINGS:
            if not isinstance(body.get(name), str):
                raise ConfirmationMalformed(f"MoMo IPN lacks {name}")
        for name in _IPN_OPTIONAL_STRINGS:
            if not isinstance(body.get(name, ""), str):
                raise ConfirmationMalformed(f"MoMo IPN {name} must be a string")
        if body["partnerCode"] != self.settings.partner_code:
            raise ConfirmationMalformed("MoMo IPN is for another partner")
        return self._confirmation(body, "IPN", ConfirmationMalformed)

    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        status = _ANSWERS[outcome]
        if status == 204:
            return BankAnswer(status=204)
        body = json.dumps({"error": outcome.value}).encode()
        return BankAnswer(status=status, body=body, content_type="application/json")

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        """The order's state at MoMo; an API-request code raises and so changes nothing."""
        answer = await self._query(bank_reference)
        for name in ("amount", "transId", "responseTime"):
            if name in answer and not wire.is_integer(answer[name]):
                raise BankAnswerInvalid(f"MoMo query: {name} is not an integer")
        return self._confirmation(
            {"amount": amount, "transId": 0, "responseTime": 0, **answer},
            "query",
            BankAnswerInvalid,
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        """A refund is a new MoMo order (from the refund id) against the original ``transId``."""
        trans_id = (request.bank_transaction_id or "").strip()
        if not (trans_id.isascii() and trans_id.isdigit()):
            return RefundResult(succeeded=False, failure_code="no_transaction")
        if not wire.MIN_AMOUNT <= request.amount <= wire.MAX_AMOUNT:
            return RefundResult(succeeded=False, failure_code="22")
        body: dict[str, Any] = {
            "partnerCode": self.settings.partner_code,
            "orderId": _refund_order_id(request.refund_id) or f"RF{uuid.uuid4().hex}",
            "requestId": uuid.uuid4().hex,
            "amount": request.amount,
            "transId": int(trans_id),
            "lang": self.settings.lang,
            "description": request.reason[:ORDER_INFO_MAX_LENGTH],
        }
        answer = await self._call(wire.REFUND_PATH, body, wire.REFUND_FIELDS)
        code = answer["resultCode"]
        if code == wire.SUCCESS:
            refund_trans = answer.get("transId")
            return RefundResult(
                succeeded=True,
                bank_refund_id=str(refund_trans) if wire.is_integer(refund_trans) else None,
            )
        if code in wire.TRANSIENT_API_CODES or code in wire.NOT_FINAL:
            raise _refusal("refund", code, answer)
        log.info("momo.refund_refused", bank=self.bank, refund_id=request.refund_id, code=code)
        return RefundResult(succeeded=False, failure_code=str(code))

    async def refund_outcome(self, request: RefundRequest) -> RefundResult | None:
        """Ask again with the same refund ``orderId``: MoMo cannot refund it twice.

        The refund's orderId comes from the hub's refund id, so a second request is
        either the first one to arrive (the earlier never reached MoMo: it refunds now) or
        refused with 41, duplicate orderId (the earlier went through). After a 41 the
        original order's ``refundTrans`` names the refund and its transId.
        """
        order_id = _refund_order_id(request.refund_id)
        if order_id is None:  # not derivable: a new request could not be told apart
            return None
        result = await self.refund(request)
        if result.succeeded or result.failure_code != str(wire.DUPLICATE_ORDER_ID):
            return result
        return await self._refund_listed(request.payment_bank_reference, order_id)

    async def _refund_listed(self, bank_reference: str, order_id: str) -> RefundResult | None:
        """The refund ``order_id`` as the original order's query lists it; ``None``: absent."""
        listed = (await self._query(bank_reference)).get("refundTrans")
        for entry in listed if isinstance(listed, list) else ():
            if not isinstance(entry, dict) or entry.get("orderId") != order_id:
                continue
            code = entry.get("resultCode", wire.SUCCESS)
            trans_id = entry.get("transId")
            if code == wire.SUCCESS:
                known = str(trans_id) if wire.is_integer(trans_id) else None
                return RefundResult(succeeded=True, bank_refund_id=known)
            if wire.is_integer(code) and wire.is_final(code):
                return RefundResult(succeeded=False, failure_code=str(code))
            return None
        return None

    async def _query(self, bank_reference: str) -> dict[str, Any]:
        """MoMo's answer about an order; an API-request code raises and so changes nothing."""
        body: dict[str, Any] = {
            "partnerCode": self.settings.partner_code,
            "requestId": uuid.uuid4().hex,
            "orderId": bank_reference,
            "lang": self.settings.lang,
        }
        answer = await self._call(wire.QUERY_PATH, body, wire.QUERY_FIELDS)
        code = answer["resultCode"]
        if code in wire.API_REQUEST_CODES:
            raise _refusal("query", code, answer)
        if answer.get("orderId") != bank_reference:
            raise BankAnswerInvalid("MoMo query: answer is about another order")
        return answer

    async def _call(
        self, path: str, body: dict[str, Any], fields: tuple[str, ...]
    ) -> dict[str, Any]:
        """POST a signed request; the answer as JSON with an integer ``resultCode``."""
        signed = {**body, "accessKey": self.settings.access_key}
        body["signature"] = wire.sign(signed, fields, self.settings.secret_key)
        url = f"{self.settings.base_url}{path}"
        what = path.rsplit("/", 1)[-1]
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        try:
            async with self.context.http.post(url, json=body, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BankUnavailable(f"MoMo {what}: {type(exc).__name__}") from exc
        if status >= 500:
            raise BankUnavailable(f"MoMo {what}: HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise BankAnswerInvalid(f"MoMo {what}: HTTP {status}, answer is not JSON") from exc
        if not isinstance(answer, dict) or not wire.is_integer(answer.get("resultCode")):
            raise BankAnswerInvalid(f"MoMo {what}: HTTP {status}, no resultCode")
        return answer

    def _confirmation(
        self, body: Mapping[str, Any], what: str, error: type[Exception]
    ) -> Confirmation:
        code: int = body["resultCode"]
        amount: int = body["amount"]
        if code == wire.SUCCESS:
            status, failure_code = ConfirmationStatus.SUCCEEDED, None
        elif code in wire.NOT_FINAL or code in wire.API_REQUEST_CODES:
            status, failure_code = ConfirmationStatus.PENDING, None
        else:
            status, failure_code = ConfirmationStatus.FAILED, str(code)
        raw_trans_id = body.get("transId")
        trans_id = raw_trans_id if wire.is_integer(raw_trans_id) and raw_trans_id > 0 else None
        if status is ConfirmationStatus.SUCCEEDED and trans_id is None:
            raise error(f"MoMo {what}: a success without transId")
        if amount <= 0:
            raise error(f"MoMo {what}: amount must be positive")
        return Confirmation(
            bank_reference=str(body["orderId"]),
            amount=amount,
            status=status,
            bank_transaction_id=None if trans_id is None else str(trans_id),
            failure_code=failure_code,
            paid_at=_moment(body.get("responseTime"))
            if status is ConfirmationStatus.SUCCEEDED
            else None,
            raw={key: str(value) for key, value in body.items() if key != "signature"},
        )


def _moment(milliseconds: Any) -> datetime | None:
    if not wire.is_integer(milliseconds) or milliseconds <= 0:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, UTC)


def _refund_order_id(refund_id: str) -> str | None:
    """MoMo's orderId for a refund: the refund id, cut to what MoMo's pattern allows.

    The same refund id always gives the same orderId, which is what makes asking again
    safe; ``None`` when none can be derived (hub refund ids always give one).
    """
    cleaned = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "-" for ch in refund_id
    )
    cleaned = cleaned.strip("-_.")[: wire.ORDER_ID_MAX_LENGTH].strip("-_.")
    return cleaned if wire.is_order_id(cleaned) else None


def _refusal(what: str, code: int, answer: Mapping[str, Any]) -> Exception:
    text = f"MoMo refused {what}: {code} {answer.get('message') or wire.message(code)}"
    if code in wire.TRANSIENT_API_CODES or code in wire.NOT_FINAL:
        return BankUnavailable(text)
    return BankAnswerInvalid(text)


def _whole(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _minutes_rounded_up(window: timedelta) -> int:
    return max(1, -(-int(window.total_seconds()) // 60))
