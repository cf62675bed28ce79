"""VNPay wire format: golden URLs from the npm ``vnpay`` library, IPN reading, signatures."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from banks.vnpay import wire
from banks.vnpay.connector import VnpayConnector
from payhub.connectors.port import (
    ConfirmationOutcome,
    ConfirmationStatus,
    ConnectorContext,
    InboundMessage,
    OrderRequest,
)
from payhub.domain.clock import VIETNAM, FakeClock
from payhub.errors import (
    ConfigError,
    ConfirmationMalformed,
    ConfirmationSignatureInvalid,
    StatementError,
)
from payhub.reconcile.entries import StatementEntry

VECTORS_PATH = (
    Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "vnpay_vietqr_vectors.json"
)
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
SECRET: str = VECTORS["secret"]
TMN_CODE: str = VECTORS["tmnCode"]
SANDBOX = "https://sandbox.vnpayment.vn"
PAY_URLS = VECTORS["pay_urls"]


def _vector_id(vector: dict[str, Any]) -> str:
    return str(vector["input"]["vnp_TxnRef"])


def _options(**overrides: Any) -> dict[str, Any]:
    return {"tmn_code": TMN_CODE, "hash_secret": SECRET, "base_url": SANDBOX, **overrides}


@pytest.fixture(name="connector")
async def _connector() -> Any:
    async with aiohttp.ClientSession() as http:
        context = ConnectorContext(http=http, clock=FakeClock(), notify_url="http://hub/notify")
        yield VnpayConnector("vnpay_test", _options(), context)


def _signed(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    return {**params, wire.HASH_PARAM: wire.sign_query(params, secret)}


def _ipn(**overrides: str) -> dict[str, str]:
    params = {
        "vnp_Amount": "2550000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14000001",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan ho so",
        "vnp_PayDate": "20261128100512",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": TMN_CODE,
        "vnp_TransactionNo": "14000001",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": "PH20261128000001",
    }
    params.update(overrides)
    return params


def _message(query: dict[str, str]) -> InboundMessage:
    return InboundMessage(method="GET", query=query, headers={}, body=b"")


# --- golden vectors -----------------------------------------------------------------


def test_vectors_fixture_is_the_shared_file() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "vectors.json"
    if not shared.exists():
        pytest.skip("shared data not checked out next to the repository")
    assert VECTORS_PATH.read_bytes() == shared.read_bytes()


@pytest.mark.parametrize("vector", PAY_URLS, ids=_vector_id)
def test_pay_url_matches_npm_vnpay(vector: dict[str, Any]) -> None:
    given_input = vector["input"]
    params = {key: str(value) for key, value in given_input.items()}
    params |= {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_CurrCode": "VND",
        "vnp_TmnCode": TMN_CODE,
        "vnp_Amount": wire.encode_amount(given_input["vnp_Amount"]),
    }

    assert wire.pay_url(SANDBOX, params, SECRET) == vector["url"]


@pytest.mark.parametrize("vector", PAY_URLS, ids=_vector_id)
async def test_connector_places_the_npm_vnpay_url(vector: dict[str, Any]) -> None:
    given_input = vector["input"]
    options = _options(
        locale=given_input["vnp_Locale"],
        order_type=given_input["vnp_OrderType"],
        bank_code=given_input.get("vnp_BankCode"),
    )
    async with aiohttp.ClientSession() as http:
        context = ConnectorContext(http=http, clock=FakeClock(), notify_url="http://hub/notify")
        connector = VnpayConnector("vnpay_test", options, context)
        placed = await connector.place_order(
            OrderRequest(
                payment_id="pay_1",
                bank_reference=given_input["vnp_TxnRef"],
                amount=given_input["vnp_Amount"],
                order_info=given_input["vnp_OrderInfo"],
                return_url=given_input["vnp_ReturnUrl"],
                created_at=wire.parse_date(str(given_input["vnp_CreateDate"])),
                expires_at=wire.parse_date(str(given_input["vnp_ExpireDate"])),
                payer_ip=given_input["vnp_IpAddr"],
            )
        )

    assert placed.payment_url == vector["url"]


@pytest.mark.parametrize("vector", PAY_URLS, ids=_vector_id)
def test_vector_urls_verify_and_tampered_ones_do_not(vector: dict[str, Any]) -> None:
    params = dict(parse_qsl(urlsplit(vector["url"]).query, keep_blank_values=True))
    assert wire.verify_query(params, SECRET)

    upper = {**params, wire.HASH_PARAM: params[wire.HASH_PARAM].upper()}
    assert wire.verify_query(upper, SECRET)
    with_type = {**params, wire.HASH_TYPE_PARAM: "HmacSHA512"}
    assert wire.verify_query(with_type, SECRET)

    assert not wire.verify_query({**params, "vnp_Amount": "255000100"}, SECRET)
    assert not wire.verify_query(params, "another secret")
    assert not wire.verify_query({k: v for k, v in params.items() if k != wire.HASH_PARAM}, SECRET)


# --- signatures ---------------------------------------------------------------------

_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1)
_params = st.dictionaries(
    st.builds(lambda name: f"vnp_{name}", _names).filter(
        lambda key: key not in (wire.HASH_PARAM, wire.HASH_TYPE_PARAM)
    ),
    st.text(),
    min_size=1,
    max_size=8,
)


@given(params=_params)
def test_any_signed_query_verifies(params: dict[str, str]) -> None:
    assert wire.verify_query(_signed(params), SECRET)


@given(params=_params, data=st.data())
def test_any_single_character_change_breaks_the_hash(
    params: dict[str, str], data: st.DataObject
) -> None:
    signed = _signed(params)
    key = data.draw(st.sampled_from(sorted(params)))
    value = params[key]
    position = data.draw(st.integers(min_value=0, max_value=len(value)))
    replaced = data.draw(st.characters().filter(lambda ch: value[position : position + 1] != ch))
    changed = value[:position] + replaced + value[position + 1 :]

    assert not wire.verify_query({**signed, key: changed}, SECRET)


def test_a_lone_surrogate_in_a_value_is_refused_not_raised() -> None:
    signed = _signed({"vnp_TxnRef": "PH0000000001"})
    assert not wire.verify_query({**signed, "vnp_OrderInfo": "\ud800"}, SECRET)


@given(params=_params, data=st.data())
def test_any_changed_hash_digit_fails(params: dict[str, str], data: st.DataObject) -> None:
    signed = _signed(params)
    digest = signed[wire.HASH_PARAM]
    position = data.draw(st.integers(min_value=0, max_value=len(digest) - 1))
    digit = data.draw(st.sampled_from("0123456789abcdef").filter(lambda d: d != digest[position]))
    signed[wire.HASH_PARAM] = digest[:position] + digit + digest[position + 1 :]

    assert not wire.verify_query(signed, SECRET)


def test_canonical_query_sorts_encodes_and_skips_foreign_params() -> None:
    params = {"vnp_b": "a b&c=d", "vnp_a": "x+y/é", "other": "ignored", wire.HASH_PARAM: "h"}

    assert wire.canonical_query(params) == "vnp_a=x%2By%2F%C3%A9&vnp_b=a+b%26c%3Dd"


def test_querydr_signature_is_hmac_over_pipe_joined_fields_in_order() -> None:
    body = {
        "vnp_RequestId": "r1",
        "vnp_Version": "2.1.0",
        "vnp_Command": "querydr",
        "vnp_TmnCode": TMN_CODE,
        "vnp_TxnRef": "PH1",
        "vnp_TransactionDate": "20261128100000",
        "vnp_CreateDate": "20261128110000",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_OrderInfo": "Truy van",
    }
    text = "r1|2.1.0|querydr|PAYHUB01|PH1|20261128100000|20261128110000|127.0.0.1|Truy van"
    expected = hmac.new(SECRET.encode(), text.encode(), hashlib.sha512).hexdigest()

    assert wire.pipe_text(body, wire.QUERYDR_FIELDS) == text
    assert wire.sign_fields(body, wire.QUERYDR_FIELDS, SECRET) == expected
    assert wire.verify_fields(
        {**body, "vnp_SecureHash": expected.upper()}, wire.QUERYDR_FIELDS, SECRET
    )
    tampered = {**body, "vnp_TxnRef": "PH2", "vnp_SecureHash": expected}
    assert not wire.verify_fields(tampered, wire.QUERYDR_FIELDS, SECRET)
    assert not wire.verify_fields(body, wire.QUERYDR_FIELDS, SECRET)


def test_refund_and_response_fields_follow_banks_md() -> None:
    assert "|".join(f.removeprefix("vnp_") for f in wire.REFUND_FIELDS) == (
        "RequestId|Version|Command|TmnCode|TransactionType|TxnRef|Amount|TransactionNo"
        "|TransactionDate|CreateBy|CreateDate|IpAddr|OrderInfo"
    )
    assert "|".join(f.removeprefix("vnp_") for f in wire.REFUND_RESPONSE_FIELDS) == (
        "ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate"
        "|TransactionNo|TransactionType|TransactionStatus|OrderInfo"
    )
    assert "|".join(f.removeprefix("vnp_") for f in wire.QUERYDR_RESPONSE_FIELDS) == (
        "ResponseId|Command|ResponseCode|Message|TmnCode|TxnRef|Amount|BankCode|PayDate"
        "|TransactionNo|TransactionType|TransactionStatus|OrderInfo|PromotionCode|PromotionAmount"
    )
    assert wire.response_fields("querydr") == wire.QUERYDR_RESPONSE_FIELDS
    assert wire.response_fields("refund") == wire.REFUND_RESPONSE_FIELDS


def test_pipe_text_counts_missing_fields_as_empty() -> None:
    body = {"vnp_ResponseId": "x", "vnp_Amount": 100, "vnp_OrderInfo": None}

    assert wire.pipe_text(body, wire.REFUND_RESPONSE_FIELDS) == "x" + "|" * 6 + "100" + "|" * 6
    assert wire.pipe_text(body, wire.QUERYDR_RESPONSE_FIELDS) == "x" + "|" * 6 + "100" + "|" * 8


# --- amounts, dates, order info -----------------------------------------------------


def test_amounts_are_vnd_times_100_both_ways() -> None:
    assert wire.encode_amount(25_500) == "2550000"
    assert wire.decode_amount("2550000") == 25_500
    assert wire.decode_amount(wire.encode_amount(100_000_000_000)) == 100_000_000_000


@pytest.mark.parametrize("text", ["2550001", "-2550000", "+2550000", " 2550000", "25.5", "1e5", ""])
def test_amounts_that_are_not_whole_vnd_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        wire.decode_amount(text)


def test_amounts_must_be_int() -> None:
    with pytest.raises(TypeError):
        wire.encode_amount(25_500.0)  # type: ignore[arg-type]


def test_dates_are_gmt_plus_7() -> None:
    moment = datetime(2026, 11, 28, 17, 30, 5, tzinfo=UTC)

    assert wire.format_date(moment) == "20261129003005"
    assert wire.parse_date("20261129003005") == moment
    assert wire.parse_date("20261129003005").utcoffset() == timedelta(hours=7)


@pytest.mark.parametrize(
    "text", ["2026112900300", "202611290030055", "2026-11-29T00:30", "20261329003005"]
)
def test_bad_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_date(text)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        wire.format_date(datetime(2026, 11, 28, 10, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thanh toán hồ sơ Đăng ký đất đai", "Thanh toan ho so Dang ky dat dai"),
        ("Lệ phí trước bạ xe máy", "Le phi truoc ba xe may"),
        ("ĐỒNG Ý đường", "DONG Y duong"),
        ("Hồ sơ H29.17-261127-0001", "Ho so H29.17-261127-0001"),
        ("Phí <b>50%</b> & thuế\n#1", "Phi b 50 b thue 1"),
        ("  nhiều   khoảng\ttrắng  ", "nhieu khoang trang"),
        ("", ""),
    ],
)
def test_order_info_loses_diacritics_and_special_characters(text: str, expected: str) -> None:
    assert wire.plain_order_info(text) == expected


@given(st.text())
def test_order_info_is_always_plain_ascii_within_255(text: str) -> None:
    plain = wire.plain_order_info(text)
    assert len(plain) <= 255
    assert all((ch.isalnum() and ch.isascii()) or ch in " .,:_-" for ch in plain)


# --- the connector's pure parts -----------------------------------------------------


def test_options_are_checked() -> None:
    assert VnpayConnector.check_options(_options()) == []
    problems = VnpayConnector.check_options(
        {"tmn_code": "SHORT", "base_url": "ftp://x", "locale": "fr", "timeout_seconds": 0}
    )
    assert len(problems) == 5
    assert any("tmn_code" in p for p in problems)
    assert any("hash_secret" in p for p in problems)
    assert VnpayConnector.check_options(_options(timeout_seconds=True)) != []


async def test_connector_refuses_bad_options() -> None:
    async with aiohttp.ClientSession() as http:
        context = ConnectorContext(http=http, clock=FakeClock(), notify_url="http://hub/notify")
        with pytest.raises(ConfigError, match="hash_secret"):
            VnpayConnector("vnpay_test", _options(hash_secret=""), context)


def test_settings_repr_hides_the_secret(connector: VnpayConnector) -> None:
    assert SECRET not in repr(connector.settings)


def test_paid_ipn_is_a_success(connector: VnpayConnector) -> None:
    (confirmation,) = connector.parse_confirmation(_message(_signed(_ipn())))

    assert confirmation.status is ConfirmationStatus.SUCCEEDED
    assert confirmation.bank_reference == "PH20261128000001"
    assert confirmation.amount == 25_500
    assert confirmation.bank_transaction_id == "14000001"
    assert confirmation.failure_code is None
    assert confirmation.paid_at == datetime(2026, 11, 28, 10, 5, 12, tzinfo=VIETNAM)


@pytest.mark.parametrize(
    ("response_code", "transaction_status", "status", "failure_code"),
    [
        ("24", "02", ConfirmationStatus.FAILED, "24"),
        ("51", "02", ConfirmationStatus.FAILED, "51"),
        ("07", "07", ConfirmationStatus.FAILED, "07"),
        ("00", "02", ConfirmationStatus.FAILED, "02"),
        ("24", "00", ConfirmationStatus.FAILED, "24"),
        ("00", "01", ConfirmationStatus.PENDING, None),
        ("99", "01", ConfirmationStatus.PENDING, None),
    ],
)
def test_ipn_is_paid_only_when_both_codes_are_00(
    connector: VnpayConnector,
    response_code: str,
    transaction_status: str,
    status: ConfirmationStatus,
    failure_code: str | None,
) -> None:
    query = _signed(_ipn(vnp_ResponseCode=response_code, vnp_TransactionStatus=transaction_status))
    (confirmation,) = connector.parse_confirmation(_message(query))

    assert confirmation.status is status
    assert confirmation.failure_code == failure_code
    assert confirmation.paid_at is None


def test_cancelled_ipn_has_no_transaction(connector: VnpayConnector) -> None:
    query = _signed(_ipn(vnp_ResponseCode="24", vnp_TransactionStatus="02", vnp_TransactionNo="0"))

    (confirmation,) = connector.parse_confirmation(_message(query))
    assert confirmation.bank_transaction_id is None


@pytest.mark.parametrize(
    "query",
    [
        _ipn(),
        {**_signed(_ipn()), "vnp_Amount": "2650000"},
        {**_signed(_ipn()), wire.HASH_PARAM: ""},
        _signed(_ipn(), secret="not the secret"),
    ],
    ids=["unsigned", "tampered", "empty-hash", "wrong-secret"],
)
def test_unsigned_or_tampered_ipn_is_refused(
    connector: VnpayConnector, query: dict[str, str]
) -> None:
    with pytest.raises(ConfirmationSignatureInvalid):
        connector.parse_confirmation(_message(query))


@pytest.mark.parametrize(
    "overrides",
    [
        {"vnp_Amount": "2550050"},
        {"vnp_Amount": "abc"},
        {"vnp_TxnRef": ""},
        {"vnp_ResponseCode": "0"},
        {"vnp_TmnCode": "OTHER001"},
        {"vnp_PayDate": "2026-11-28"},
    ],
)
def test_signed_but_malformed_ipn_is_refused(
    connector: VnpayConnector, overrides: dict[str, str]
) -> None:
    with pytest.raises(ConfirmationMalformed):
        connector.parse_confirmation(_message(_signed(_ipn(**overrides))))


def test_missing_field_is_malformed(connector: VnpayConnector) -> None:
    params = _ipn()
    del params["vnp_TransactionStatus"]

    with pytest.raises(ConfirmationMalformed, match="vnp_TransactionStatus"):
        connector.parse_confirmation(_message(_signed(params)))


@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [
        (ConfirmationOutcome.APPLIED, "00", "Confirm Success"),
        (ConfirmationOutcome.ALREADY_APPLIED, "02", "Order already confirmed"),
        (ConfirmationOutcome.UNKNOWN_ORDER, "01", "Order not found"),
        (ConfirmationOutcome.AMOUNT_MISMATCH, "04", "Invalid amount"),
        (ConfirmationOutcome.SIGNATURE_INVALID, "97", "Invalid signature"),
        (ConfirmationOutcome.IGNORED, "02", "Order already confirmed"),
        (ConfirmationOutcome.MALFORMED, "99", "Unknown error"),
        (ConfirmationOutcome.ERROR, "99", "Unknown error"),
    ],
)
def test_answers_speak_vnpay(
    connector: VnpayConnector, outcome: ConfirmationOutcome, code: str, message: str
) -> None:
    answer = connector.answer_confirmation(outcome)

    assert (answer.status, answer.content_type) == (200, "application/json")
    assert json.loads(answer.body) == {"RspCode": code, "Message": message}


STATEMENT = (
    "vnp_TmnCode,vnp_TransactionNo,vnp_TxnRef,amount,status,pay_date,fee\n"
    f"{TMN_CODE},14000001,PH1,25500,00,20261128100512,280\n"
    "\n"
    f"{TMN_CODE},14000002,PH2,150000,04,20261128235959,0\n"
)


def read(connector: VnpayConnector, data: bytes) -> list[StatementEntry]:
    return list(connector.read_statement(io.BytesIO(data)))


def test_statement_lines_are_read_as_the_stream_is(connector: VnpayConnector) -> None:
    lines = connector.read_statement(io.BytesIO(("\ufeff" + STATEMENT).encode()))
    assert not isinstance(lines, list)  # an iterator: the file is never held whole

    read_lines = list(lines)
    assert [(x.line, x.reference, x.amount, x.settled, x.fee) for x in read_lines] == [
        (2, "PH1", 25_500, True, 280),
        (4, "PH2", 150_000, False, 0),
    ]
    assert read_lines[0].bank_transaction_id == "14000001"
    assert read_lines[0].booked_at == datetime(2026, 11, 28, 10, 5, 12, tzinfo=VIETNAM)


def test_statement_columns_may_move(connector: VnpayConnector) -> None:
    data = (
        "fee,amount,vnp_TxnRef,status,pay_date,vnp_TransactionNo,extra,vnp_TmnCode\n"
        f"0,100,PH9,00,20261128000000,7,x,{TMN_CODE}\n"
    )

    [line] = read(connector, data.encode())
    assert (line.reference, line.amount, line.bank_transaction_id) == ("PH9", 100, "7")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"vnp_TxnRef,amount\nPH1,100\n",
        STATEMENT.replace("25500", "25500.5").encode(),
        STATEMENT.replace("25500", "-25500").encode(),
        STATEMENT.replace(",280", ",280,9").encode(),
        STATEMENT.replace("20261128100512", "28/11/2026").encode(),
        STATEMENT.replace(",00,", ",ok,").encode(),
        STATEMENT.replace("PH1", "").encode(),
        STATEMENT.replace("PH1", '"PH1').encode(),
        STATEMENT.replace(f"{TMN_CODE},14000002", "OTHER001,14000002").encode(),
        b"\xff\xfe\x00",
    ],
)
def test_malformed_statements_are_refused(connector: VnpayConnector, data: bytes) -> None:
    with pytest.raises(StatementError):
        read(connector, data)


@given(st.text())
def test_quoting_skips_only_text_quote_plus_leaves_unchanged(text: str) -> None:
    from urllib.parse import quote_plus

    from banks.vnpay.wire import _quote

    assert _quote(text) == quote_plus(text)
