"""VNPay 2.1.0 on the wire: signed pay URLs, signed IPN queries, pipe-signed API bodies.

Pure functions shared by the connector (hub side) and the simulator (bank side), so both
halves sign byte for byte the same way. The pay-URL signing is checked against URLs made by
the npm ``vnpay`` library (``tests/unit/test_vnpay_wire.py``).

Two signing schemes coexist in VNPay:

- *query signing* (pay URL, IPN, return URL): every ``vnp_*`` parameter except the hash,
  sorted by name, ``quote_plus``-encoded, joined as a query string, HMAC-SHA512 in hex;
- *pipe signing* (querydr / refund requests and their responses): the values of a fixed
  list of fields joined with ``|``, HMAC-SHA512 in hex. The querydr answer is signed over
  15 fields (``…|OrderInfo|PromotionCode|PromotionAmount``), the refund answer over 13;
  an absent field counts as an empty string, as in the npm ``vnpay`` library.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from payhub.domain.clock import VIETNAM
from payhub.domain.money import from_minor_units, to_minor_units

VERSION = "2.1.0"
CURRENCY = "VND"
PAY_PATH = "/paymentv2/vpcpay.html"
API_PATH = "/merchant_webapi/api/transaction"
HASH_PARAM = "vnp_SecureHash"
HASH_TYPE_PARAM = "vnp_SecureHashType"
AMOUNT_FACTOR = 100
"""VNPay carries amounts as VND × 100 (there are no đồng fractions: it is a fixed factor)."""
DATE_FORMAT = "%Y%m%d%H%M%S"
ORDER_INFO_MAX_LENGTH = 255

QUERYDR_FIELDS: tuple[str, ...] = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_TransactionDate",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_FIELDS: tuple[str, ...] = (
    "vnp_RequestId",
    "vnp_Version",
    "vnp_Command",
    "vnp_TmnCode",
    "vnp_TransactionType",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_TransactionNo",
    "vnp_TransactionDate",
    "vnp_CreateBy",
    "vnp_CreateDate",
    "vnp_IpAddr",
    "vnp_OrderInfo",
)
REFUND_RESPONSE_FIELDS: tuple[str, ...] = (
    "vnp_ResponseId",
    "vnp_Command",
    "vnp_ResponseCode",
    "vnp_Message",
    "vnp_TmnCode",
    "vnp_TxnRef",
    "vnp_Amount",
    "vnp_BankCode",
    "vnp_PayDate",
    "vnp_TransactionNo",
    "vnp_TransactionType",
    "vnp_TransactionStatus",
    "vnp_OrderInfo",
)
QUERYDR_RESPONSE_FIELDS: tuple[str, ...] = (
    *REFUND_RESPONSE_FIELDS,
    "vnp_PromotionCode",
    "vnp_PromotionAmount",
)
"""The querydr answer is signed over the refund answer's 13 fields plus the promotion two."""
REQUEST_FIELDS: dict[str, tuple[str, ...]] = {"querydr": QUERYDR_FIELDS, "refund": REFUND_FIELDS}
RESPONSE_FIELDS: dict[str, tuple[str, ...]] = {
    "querydr": QUERYDR_RESPONSE_FIELDS,
    "refund": REFUND_RESPONSE_FIELDS,
}


def response_fields(command: str) -> tuple[str, ...]:
    """The fields an answer to ``command`` is signed over (13 for anything but querydr)."""
    return RESPONSE_FIELDS.get(command, REFUND_RESPONSE_FIELDS)


# vnp_ResponseCode of a payment (IPN, return URL).
RESPONSE_CODES: dict[str, str] = {
    "00": "Transaction successful",
    "07": "Debited, but the transaction is suspected of fraud",
    "09": "Card or account not registered for internet banking",
    "10": "Card or account verification failed more than 3 times",
    "11": "Payment timed out",
    "12": "Card or account locked",
    "13": "Wrong one-time password",
    "24": "Cancelled by the payer",
    "51": "Insufficient funds",
    "65": "Daily transaction limit exceeded",
    "75": "Paying bank under maintenance",
    "79": "Wrong payment password too many times",
    "99": "Other error",
}

# vnp_TransactionStatus of a payment.
TRANSACTION_STATUSES: dict[str, str] = {
    "00": "Successful",
    "01": "Not completed",
    "02": "Error",
    "04": "Reversed (payer debited, gateway failed)",
    "05": "Refund in progress",
    "06": "Refund sent to the bank",
    "07": "Suspected fraud",
    "09": "Refund rejected",
}
PENDING_TRANSACTION_STATUSES = frozenset({"01"})

# vnp_ResponseCode of the merchant API (querydr, refund).
API_CODES: dict[str, str] = {
    "00": "Request successful",
    "02": "Invalid merchant (vnp_TmnCode)",
    "03": "Invalid data format",
    "91": "Transaction not found",
    "93": "Invalid refund amount",
    "94": "Duplicate request (vnp_RequestId)",
    "95": "Transaction not successful, refund rejected",
    "97": "Invalid checksum",
    "99": "Other error",
}
API_NOT_FOUND = "91"
API_DUPLICATE_REQUEST = "94"
API_BAD_CHECKSUM = "97"

# The merchant's answer to an IPN: {"RspCode": .., "Message": ..}.
IPN_ANSWERS: dict[str, str] = {
    "00": "Confirm Success",
    "01": "Order not found",
    "02": "Order already confirmed",
    "04": "Invalid amount",
    "97": "Invalid signature",
    "99": "Unknown error",
}
IPN_FINAL_ANSWERS = frozenset({"00", "02"})
"""Answers that end VNPay's IPN retries; any other answer makes the gateway send again."""

REFUND_FULL = "02"
REFUND_PARTIAL = "03"
TRANSACTION_TYPE_PAYMENT = "01"


def hmac_sha512(secret: str, message: str) -> str:
    """Lower-case hex HMAC-SHA512, VNPay's only signature primitive."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha512).hexdigest()


def _same_digest(expected: str, received: str) -> bool:
    # VNPay's own samples compare upper-case hex; hex case carries no meaning.
    return hmac.compare_digest(expected.lower().encode(), received.strip().lower().encode())


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
"""What ``quote_plus`` leaves as it is: most VNPay values (codes, amounts, dates)."""


def _quote(text: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text)


def canonical_query(params: Mapping[str, str]) -> str:
    """The signed text: ``vnp_*`` params but the hash ones, sorted by name, ``quote_plus``-ed.

    Values ``quote_plus`` would not change skip it (a pay URL has about a dozen such).
    """
    signed = sorted(
        (key, value)
        for key, value in params.items()
        if key.startswith("vnp_") and key not in (HASH_PARAM, HASH_TYPE_PARAM)
    )
    return "&".join(f"{_quote(key)}={_quote(value)}" for key, value in signed)


def sign_query(params: Mapping[str, str], secret: str) -> str:
    return hmac_sha512(secret, canonical_query(params))


def signed_query(params: Mapping[str, str], secret: str) -> str:
    """The query string VNPay sends or expects: canonical params, then ``vnp_SecureHash``."""
    query = canonical_query(params)
    return f"{query}&{HASH_PARAM}={hmac_sha512(secret, query)}"


def pay_url(base_url: str, params: Mapping[str, str], secret: str) -> str:
    """The payer's URL on the gateway's pay page, signed."""
    return f"{base_url.rstrip('/')}{PAY_PATH}?{signed_query(params, secret)}"


def verify_query(params: Mapping[str, str], secret: str) -> bool:
    """Whether a received query (IPN, return URL, pay URL) carries the right hash."""
    received = params.get(HASH_PARAM)
    if not received:
        return False
    try:
        expected = sign_query(params, secret)
    except UnicodeEncodeError:  # a lone surrogate: no gateway signed that
        return False
    return _same_digest(expected, received)


def pipe_text(body: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    """The pipe-joined text signed for the merchant API; a missing field counts as empty."""
    values = (body.get(name) for name in fields)
    return "|".join("" if value is None else str(value) for value in values)


def sign_fields(body: Mapping[str, Any], fields: tuple[str, ...], secret: str) -> str:
    return hmac_sha512(secret, pipe_text(body, fields))


def verify_fields(body: Mapping[str, Any], fields: tuple[str, ...], secret: str) -> bool:
    received = body.get(HASH_PARAM)
    if not isinstance(received, str) or not received:
        return False
    return _same_digest(sign_fields(body, fields, secret), received)


def format_date(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in GMT+7, whatever zone ``moment`` is in."""
    if moment.tzinfo is None:
        raise ValueError("VNPay dates need a timezone-aware datetime")
    return moment.astimezone(VIETNAM).strftime(DATE_FORMAT)


def parse_date(text: str) -> datetime:
    """A VNPay ``yyyyMMddHHmmss`` (GMT+7) as an aware datetime."""
    if len(text) != 14 or not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a VNPay date: {text!r}")
    return datetime.strptime(text, DATE_FORMAT).replace(tzinfo=VIETNAM)


def encode_amount(amount: int) -> str:
    """VND to VNPay's ``vnp_Amount`` text (× 100)."""
    return str(to_minor_units(amount, AMOUNT_FACTOR))


def decode_amount(text: str) -> int:
    """``vnp_Amount`` back to VND; signs, spaces, fractions and remainders are errors."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"vnp_Amount is not a whole number: {text!r}")
    return from_minor_units(text, AMOUNT_FACTOR)


_LETTER_D = str.maketrans({"đ": "d", "Đ": "D"})
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9 .,:_-]+")
_SPACES = re.compile(r"\s+")


def plain_order_info(text: str, max_length: int = ORDER_INFO_MAX_LENGTH) -> str:
    """``vnp_OrderInfo`` as VNPay wants it: no diacritics, no special characters.

    ``đ`` is a letter of its own, not ``d`` plus a mark, so NFD alone keeps it.
    """
    decomposed = unicodedata.normalize("NFD", text.translate(_LETTER_D))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    cleaned = _SPACES.sub(" ", _NOT_ALLOWED.sub(" ", bare)).strip()
    return cleaned[:max_length].rstrip()
