"""The hub's side of VNPay 2.1.0: pay URLs, IPNs, querydr, refunds and the daily statement.

Options (the bank's TOML table):

- ``tmn_code`` (8 characters) and ``hash_secret``: the merchant account at VNPay;
- ``base_url``: the gateway root, e.g. ``https://sandbox.vnpayment.vn`` or
  ``http://127.0.0.1:8080/sim/vnpay``; the pay page is ``{base_url}/paymentv2/vpcpay.html``
  and the merchant API ``{base_url}/merchant_webapi/api/transaction``;
- optional ``locale`` (``vn``/``en``, default ``vn``), ``order_type`` (default ``other``),
  ``timeout_seconds`` for API calls (default 10), ``bank_code`` (preselects the payer's
  method, e.g. ``VNBANK``, ``INTCARD``, ``VNPAYQR``; default: the payer chooses) and
  ``server_ip`` (the hub's address VNPay sees on API calls, default ``127.0.0.1``).

Statement CSV (one file per business day, Asia/Ho_Chi_Minh, UTF-8, optional BOM), read
line by line by ``payhub.reconcile.csv_reader`` (format ``vnpay-csv``)::

    vnp_TmnCode,vnp_TransactionNo,vnp_TxnRef,amount,status,pay_date,fee
    PAYHUB01,14000001,PH20261128000001,25500,00,20261128100512,0

``amount`` and ``fee`` are whole VND (not × 100), ``status`` is the payment's
``vnp_TransactionStatus`` (``00`` settled) and ``pay_date`` is ``yyyyMMddHHmmss`` GMT+7.
Columns are found by header name, so their order may change; extra columns are ignored.
A statement whose ``vnp_TmnCode`` is not this terminal's is refused.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
import structlog

from banks.vnpay import wire
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

LOCALES = ("vn", "en")
_API_TRANSIENT_CODES = frozenset({"94", "99"})
_IPN_REQUIRED = (
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_ResponseCode",
    "vnp_TransactionStatus",
)

_ANSWERS: dict[ConfirmationOutcome, str] = {
    ConfirmationOutcome.APPLIED: "00",
    ConfirmationOutcome.ALREADY_APPLIED: "02",
    ConfirmationOutcome.UNKNOWN_ORDER: "01",
    ConfirmationOutcome.AMOUNT_MISMATCH: "04",
    ConfirmationOutcome.SIGNATURE_INVALID: "97",
    # VNPay only stops retrying on 00/02; a valid IPN that changes nothing is done with.
    ConfirmationOutcome.IGNORED: "02",
    ConfirmationOutcome.MALFORMED: "99",
    ConfirmationOutcome.ERROR: "99",
}


@dataclass(frozen=True)
class VnpaySettings:
    """A VNPay merchant account as configured; built only from options that passed checks."""

    tmn_code: str
    hash_secret: str = field(repr=False)
    base_url: str
    locale: str = "vn"
    order_type: str = "other"
    timeout_seconds: float = 10.0
    bank_code: str | None = None
    server_ip: str = "127.0.0.1"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> VnpaySettings:
        problems = VnpayConnector.check_options(options)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            tmn_code=options["tmn_code"],
            hash_secret=options["hash_secret"],
            base_url=options["base_url"].rstrip("/"),
            locale=options.get("locale", "vn"),
            order_type=options.get("order_type", "other"),
            timeout_seconds=float(options.get("timeout_seconds", 10)),
            bank_code=options.get("bank_code") or None,
            server_ip=options.get("server_ip", "127.0.0.1"),
        )


class VnpayConnector(BankConnector):
    """VNPay's redirect gateway: the payer pays on VNPay's page, VNPay confirms by IPN."""

    protocol: ClassVar[str] = "vnpay"
    statement_format: ClassVar[str | None] = "vnpay-csv"
    places_orders_locally: ClassVar[bool] = True

    def __init__(self, bank: str, options: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(bank, options, context)
        self.settings = VnpaySettings.from_options(options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        tmn_code = options.get("tmn_code")
        if not (isinstance(tmn_code, str) and len(tmn_code) == 8 and tmn_code.isalnum()):
            problems.append("tmn_code must be the 8-character VNPay terminal code")
        secret = options.get("hash_secret")
        if not (isinstance(secret, str) and secret):
            problems.append("hash_secret must be a non-empty string")
        base_url = options.get("base_url")
        if not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
            problems.append("base_url must be an http(s) URL, e.g. https://sandbox.vnpayment.vn")
        if options.get("locale", "vn") not in LOCALES:
            problems.append(f"locale must be one of {', '.join(LOCALES)}")
        order_type = options.get("order_type", "other")
        if not (isinstance(order_type, str) and order_type):
            problems.append("order_type must be a non-empty string")
        timeout = options.get("timeout_seconds", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            problems.append("timeout_seconds must be a positive number")
        bank_code = options.get("bank_code")
        if bank_code is not None and not (isinstance(bank_code, str) and bank_code.isalnum()):
            problems.append("bank_code must be a VNPay bank code such as VNBANK")
        if not isinstance(options.get("server_ip", "127.0.0.1"), str):
            problems.append("server_ip must be a string")
        return problems

    @classmethod
    def statement_account(cls, options: Mapping[str, Any]) -> str | None:
        """The statement's ``vnp_TmnCode`` column names the terminal it was made for."""
        tmn_code = options.get("tmn_code")
        return tmn_code if isinstance(tmn_code, str) else None

    @classmethod
    def demo_options(cls, simulator_url: str) -> dict[str, Any]:
        """A fresh merchant account at the simulator: random terminal code and secret."""
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        tmn_code = "".join(secrets.choice(alphabet) for _ in range(8))
        return {
            "tmn_code": tmn_code,
            "hash_secret": secrets.token_hex(16).upper(),
            "base_url": simulator_url,
        }

    async def place_order(self, order: OrderRequest) -> PlacedOrder:
        """VNPay learns of the order from the payer's URL, so placing it needs no call."""
        params = {
            "vnp_Version": wire.VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.settings.tmn_code,
            "vnp_Amount": wire.encode_amount(order.amount),
            "vnp_CurrCode": wire.CURRENCY,
            "vnp_TxnRef": order.bank_reference,
            "vnp_OrderInfo": wire.plain_order_info(order.order_info)
            or f"Thanh toan {order.bank_reference}",
            "vnp_OrderType": self.settings.order_type,
            "vnp_Locale": self.settings.locale,
            "vnp_ReturnUrl": order.return_url,
            "vnp_IpAddr": order.payer_ip,
            "vnp_CreateDate": wire.format_date(order.created_at),
            "vnp_ExpireDate": wire.format_date(order.expires_at),
        }
        if self.settings.bank_code:
            params["vnp_BankCode"] = self.settings.bank_code
        url = wire.pay_url(self.settings.base_url, params, self.settings.hash_secret)
        return PlacedOrder(payment_url=url)

    def parse_confirmation(self, message: InboundMessage) -> Sequence[Confirmation]:
        """An IPN speaks of exactly one order."""
        return (self.read_ipn(message),)

    def read_ipn(self, message: InboundMessage) -> Confirmation:
        """Read an IPN; the hash is checked before any field is trusted."""
        query = dict(message.query)
        if not wire.verify_query(query, self.settings.hash_secret):
            raise ConfirmationSignatureInvalid("VNPay IPN hash missing or wrong")
        missing = [name for name in _IPN_REQUIRED if not query.get(name)]
        if missing:
            raise ConfirmationMalformed(f"VNPay IPN lacks {', '.join(missing)}")
        if query["vnp_TmnCode"] != self.settings.tmn_code:
            raise ConfirmationMalformed("VNPay IPN is for another terminal")
        try:
            amount = wire.decode_amount(query["vnp_Amount"])
            paid_at = wire.parse_date(query["vnp_PayDate"]) if query.get("vnp_PayDate") else None
        except ValueError as exc:
            raise ConfirmationMalformed(str(exc)) from exc
        response_code = query["vnp_ResponseCode"]
        transaction_status = query["vnp_TransactionStatus"]
        if not _is_code(response_code) or not _is_code(transaction_status):
            raise ConfirmationMalformed("VNPay IPN codes must be two digits")
        status, failure_code = _payment_status(response_code, transaction_status)
        return Confirmation(
            bank_reference=query["vnp_TxnRef"],
            amount=amount,
            status=status,
            bank_transaction_id=_transaction_no(query.get("vnp_TransactionNo")),
            failure_code=failure_code,
            paid_at=paid_at if status is ConfirmationStatus.SUCCEEDED else None,
            raw=query,
        )

    def answer_confirmation(self, outcome: ConfirmationOutcome) -> BankAnswer:
        code = _ANSWERS[outcome]
        body = json.dumps({"RspCode": code, "Message": wire.IPN_ANSWERS[code]})
        return BankAnswer(status=200, body=body.encode(), content_type="application/json")

    async def query_status(
        self, bank_reference: str, amount: int, created_at: datetime
    ) -> Confirmation | None:
        """querydr; ``created_at`` must be the order's ``vnp_CreateDate`` (VNPay looks it up)."""
        request = self._api_request("querydr")
        request.update(
            vnp_TxnRef=bank_reference,
            vnp_TransactionDate=wire.format_date(created_at),
            vnp_OrderInfo=f"Truy van giao dich {wire.plain_order_info(bank_reference)}",
        )
        answer = await self._call_api(request, wire.QUERYDR_FIELDS)
        code = answer["vnp_ResponseCode"]
        if code == wire.API_NOT_FOUND:
            return None
        if code != "00":
            raise _api_refusal("querydr", code, answer)
        return self._query_confirmation(bank_reference, answer)

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund by API; a refused refund is a value, an unreachable bank raises."""
        full = request.amount == request.payment_amount
        when = request.paid_at or self.context.clock()
        body = self._api_request("refund")
        body.update(
            vnp_TransactionType=wire.REFUND_FULL if full else wire.REFUND_PARTIAL,
            vnp_TxnRef=request.payment_bank_reference,
            vnp_Amount=wire.encode_amount(request.amount),
            vnp_TransactionNo=request.bank_transaction_id or "",
            vnp_TransactionDate=wire.format_date(when),
            vnp_CreateBy="payhub",
            vnp_OrderInfo=wire.plain_order_info(request.reason)
            or f"Hoan tien {request.payment_bank_reference}",
        )
        answer = await self._call_api(body, wire.REFUND_FIELDS)
        code = answer["vnp_ResponseCode"]
        if code != "00":
            log.info("vnpay.refund_refused", bank=self.bank, refund_id=request.refund_id, code=code)
            return RefundResult(succeeded=False, failure_code=code)
        return RefundResult(
            succeeded=True, bank_refund_id=_transaction_no(answer.get("vnp_TransactionNo"))
        )

    def _api_request(self, command: str) -> dict[str, str]:
        now = self.context.clock()
        return {
            "vnp_RequestId": uuid.uuid4().hex,
            "vnp_Version": wire.VERSION,
            "vnp_Command": command,
            "vnp_TmnCode": self.settings.tmn_code,
            "vnp_CreateDate": wire.format_date(now),
            "vnp_IpAddr": self.settings.server_ip,
        }

    async def _call_api(self, body: dict[str, str], fields: tuple[str, ...]) -> dict[str, Any]:
        """POST to the merchant API and return its verified answer."""
        body[wire.HASH_PARAM] = wire.sign_fields(body, fields, self.settings.hash_secret)
        url = f"{self.settings.base_url}{wire.API_PATH}"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        command = body["vnp_Command"]
        try:
            async with self.context.http.post(url, json=body, timeout=timeout) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BankUnavailable(f"VNPay {command}: {type(exc).__name__}") from exc
        if status >= 500:
            raise BankUnavailable(f"VNPay {command}: HTTP {status}")
        if status != 200:
            raise BankAnswerInvalid(f"VNPay {command}: HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise BankAnswerInvalid(f"VNPay {command}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise BankAnswerInvalid(f"VNPay {command}: answer is not a JSON object")
        if not self._answer_verifies(command, answer):
            raise BankAnswerInvalid(f"VNPay {command}: answer hash missing or wrong")
        code = answer.get("vnp_ResponseCode")
        if not (isinstance(code, str) and _is_code(code)):
            raise BankAnswerInvalid(f"VNPay {command}: no vnp_ResponseCode")
        if code == "00" and answer.get("vnp_TxnRef") != body["vnp_TxnRef"]:
            raise BankAnswerInvalid(f"VNPay {command}: answer is about another order")
        return answer

    def _answer_verifies(self, command: str, answer: Mapping[str, Any]) -> bool:
        """The answer's hash: over 15 fields for querydr, 13 for refund (BANKS.md).

        As the npm ``vnpay`` library does, the terminal code signed is our own, so an
        answer about another terminal cannot verify.
        """
        signed = {**answer, "vnp_TmnCode": self.settings.tmn_code}
        fields = wire.response_fields(command)
        return wire.verify_fields(signed, fields, self.settings.hash_secret)

    def _query_confirmation(self, bank_reference: str, answer: Mapping[str, Any]) -> Confirmation:
        raw = {key: str(value) for key, value in answer.items() if value is not None}
        transaction_status = raw.get("vnp_TransactionStatus", "")
        if not _is_code(transaction_status):
            raise BankAnswerInvalid("VNPay querydr: no vnp_TransactionStatus")
        try:
            amount = wire.decode_amount(raw.get("vnp_Amount", ""))
            pay_date = raw.get("vnp_PayDate")
            paid_at = wire.parse_date(pay_date) if pay_date else None
        except ValueError as exc:
            raise BankAnswerInvalid(f"VNPay querydr: {exc}") from exc
        # querydr carries no payment response code: its vnp_ResponseCode is the API's.
        status, failure_code = _payment_status("00", transaction_status)
        return Confirmation(
            bank_reference=bank_reference,
            amount=amount,
            status=status,
            bank_transaction_id=_transaction_no(raw.get("vnp_TransactionNo")),
            failure_code=failure_code,
            paid_at=paid_at if status is ConfirmationStatus.SUCCEEDED else None,
            raw=raw,
        )


def _is_code(value: str) -> bool:
    return len(value) == 2 and value.isascii() and value.isdigit()


def _payment_status(
    response_code: str, transaction_status: str
) -> tuple[ConfirmationStatus, str | None]:
    """Paid only when both codes are 00 (BANKS.md); 01 is VNPay's "not completed yet"."""
    if response_code == "00" and transaction_status == "00":
        return ConfirmationStatus.SUCCEEDED, None
    if transaction_status in wire.PENDING_TRANSACTION_STATUSES:
        return ConfirmationStatus.PENDING, None
    return ConfirmationStatus.FAILED, response_code if response_code != "00" else transaction_status


def _transaction_no(value: Any) -> str | None:
    """VNPay sends ``0`` as the transaction number of payments that never happened."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "0") else text


def _api_refusal(command: str, code: str, answer: Mapping[str, Any]) -> Exception:
    message = (
        f"VNPay refused {command}: {code} {wire.API_CODES.get(code, answer.get('vnp_Message'))}"
    )
    if code in _API_TRANSIENT_CODES:
        return BankUnavailable(message)
    return BankAnswerInvalid(message)


def _whole_vnd(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a whole VND amount")
    return int(text)
