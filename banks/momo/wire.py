"""MoMo v2 on the wire: fixed-order raw signatures, result codes, amount limits.

Pure functions shared by the connector (hub side) and the simulator (bank side), so both
halves sign byte for byte the same way.

Every MoMo signature is hex HMAC-SHA256(secretKey, ``k1=v1&k2=v2&…``) over a fixed list
of keys in a fixed (alphabetical) order, with the values raw: not URL-encoded, numbers
written as integers, an absent value empty. ``accessKey`` is always signed and never
sent in the IPN: both sides take it from their configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

CREATE_PATH = "/v2/gateway/api/create"
QUERY_PATH = "/v2/gateway/api/query"
REFUND_PATH = "/v2/gateway/api/refund"
PAY_PATH = "/v2/gateway/pay"
REQUEST_TYPE = "captureWallet"
ORDER_TYPE = "momo_wallet"
MIN_AMOUNT = 1_000
MAX_AMOUNT = 50_000_000
"""The wallet's limits in VND, for payments and refunds alike."""
ORDER_ID = re.compile(r"[0-9a-zA-Z]([-_.]*[0-9a-zA-Z]+)*")
ORDER_ID_MAX_LENGTH = 50

CREATE_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "ipnUrl",
    "orderId",
    "orderInfo",
    "partnerCode",
    "redirectUrl",
    "requestId",
    "requestType",
)
IPN_FIELDS = (
    "accessKey",
    "amount",
    "extraData",
    "message",
    "orderId",
    "orderInfo",
    "orderType",
    "partnerCode",
    "payType",
    "requestId",
    "responseTime",
    "resultCode",
    "transId",
)
QUERY_FIELDS = ("accessKey", "orderId", "partnerCode", "requestId")
REFUND_FIELDS = (
    "accessKey",
    "amount",
    "description",
    "orderId",
    "partnerCode",
    "requestId",
    "transId",
)
INTEGER_FIELDS = frozenset({"amount", "transId", "resultCode", "responseTime"})
"""Fields MoMo sends as JSON numbers; they are signed as written integers."""

SUCCESS = 0
DUPLICATE_ORDER_ID = 41
"""A refund order with this orderId exists: an earlier request for it went through."""
NOT_FINAL = frozenset({9000, 1000, 7000, 7002, 8000})
"""Authorised, waiting for the payer, processing: the payment may still go either way."""
API_REQUEST_CODES = frozenset({10, 11, 12, 13, 20, 21, 22, *range(40, 48), 98, 99})
"""Codes about the API request (maintenance, format, duplicate, in progress), not the payment."""
TRANSIENT_API_CODES = frozenset({10, 43, 98, 99})
"""API-request codes worth trying again later: the bank is busy or under maintenance."""

RESULT_CODES: dict[int, str] = {
    0: "Successful.",
    10: "System is under maintenance.",
    11: "Access denied.",
    12: "Unsupported API version for this request.",
    13: "Merchant authentication failed.",
    20: "Bad format request.",
    21: "Request rejected due to invalid transaction amount.",
    22: "The transaction amount is out of range.",
    40: "Duplicated requestId.",
    41: "Duplicated orderId.",
    42: "Invalid orderId or orderId is not found.",
    43: "Request rejected due to a similar transaction in progress.",
    1000: "Transaction initiated, waiting for the payer's confirmation.",
    1001: "Insufficient funds.",
    1003: "Transaction cancelled.",
    1005: "The payment URL or QR code has expired.",
    1006: "The payer declined the payment.",
    1080: "Refund failed during processing.",
    1081: "Refund rejected: the original transaction may have been refunded.",
    7000: "Transaction is being processed.",
    7002: "Transaction is being processed by the provider.",
    8000: "Transaction is waiting for the payer's confirmation.",
    9000: "Transaction authorised.",
    99: "Unknown error.",
}


def is_final(code: int) -> bool:
    """Whether ``code`` settles the payment (success or a payment failure)."""
    return code not in NOT_FINAL and code not in API_REQUEST_CODES


def message(code: int) -> str:
    return RESULT_CODES.get(code, "Transaction failed.")


def hmac_sha256(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise ValueError("MoMo signs no booleans")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"MoMo numbers are integers, not {value!r}")
        return str(int(value))
    return str(value)


def raw_text(values: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    """The signed text: ``key=value`` pairs in ``fields`` order, raw values, ``&``-joined."""
    return "&".join(f"{name}={_text(values.get(name))}" for name in fields)


def sign(values: Mapping[str, Any], fields: tuple[str, ...], secret: str) -> str:
    return hmac_sha256(secret, raw_text(values, fields))


def verify(
    values: Mapping[str, Any], fields: tuple[str, ...], access_key: str, secret: str
) -> bool:
    """Whether ``values`` (with the configured ``accessKey``) carry the right signature."""
    received = values.get("signature")
    if not isinstance(received, str) or not received:
        return False
    try:
        expected = sign({**values, "accessKey": access_key}, fields, secret)
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode(), received.strip().lower().encode())


def encode_extra_data(data: Mapping[str, Any]) -> str:
    """``extraData``: base64 of compact JSON."""
    text = json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode()).decode()


def decode_extra_data(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise ValueError("extraData is not base64 JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("extraData is not a JSON object")
    return data


def is_order_id(text: str) -> bool:
    return len(text) <= ORDER_ID_MAX_LENGTH and ORDER_ID.fullmatch(text) is not None


def is_integer(value: Any) -> TypeGuard[int]:
    """A JSON integer as Python reads it (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)
