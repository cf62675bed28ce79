"""MoMo signatures: fixed field order, raw values, integers, accessKey from the config."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banks.momo import wire

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
integers = st.integers(min_value=0, max_value=10**15)


@st.composite
def ipns(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        name: draw(integers) if name in wire.INTEGER_FIELDS else draw(texts)
        for name in wire.IPN_FIELDS
        if name != "accessKey"
    }
    return body


def by_hand(values: dict[str, Any], fields: tuple[str, ...], secret: str) -> str:
    text = "&".join(f"{name}={values.get(name, '')}" for name in fields)
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_field_lists_follow_banks_md() -> None:
    assert "&".join(wire.CREATE_FIELDS) == (
        "accessKey&amount&extraData&ipnUrl&orderId&orderInfo&partnerCode&redirectUrl"
        "&requestId&requestType"
    )
    assert "&".join(wire.IPN_FIELDS) == (
        "accessKey&amount&extraData&message&orderId&orderInfo&orderType&partnerCode&payType"
        "&requestId&responseTime&resultCode&transId"
    )
    assert "&".join(wire.QUERY_FIELDS) == "accessKey&orderId&partnerCode&requestId"
    assert "&".join(wire.REFUND_FIELDS) == (
        "accessKey&amount&description&orderId&partnerCode&requestId&transId"
    )


def test_raw_text_is_not_url_encoded() -> None:
    values = {"accessKey": "k", "orderId": "PH-1", "partnerCode": "MOMO", "requestId": "a b&c"}
    assert wire.raw_text(values, wire.QUERY_FIELDS) == (
        "accessKey=k&orderId=PH-1&partnerCode=MOMO&requestId=a b&c"
    )


@given(ipns(), texts, st.text(min_size=1, max_size=40))
def test_signature_is_hmac_sha256_over_the_fixed_order(
    body: dict[str, Any], access_key: str, secret: str
) -> None:
    signed = {**body, "accessKey": access_key}
    assert wire.sign(signed, wire.IPN_FIELDS, secret) == by_hand(signed, wire.IPN_FIELDS, secret)


@given(ipns(), texts, st.text(min_size=1, max_size=40))
def test_signed_ipn_verifies_with_the_configured_access_key(
    body: dict[str, Any], access_key: str, secret: str
) -> None:
    body["signature"] = wire.sign({**body, "accessKey": access_key}, wire.IPN_FIELDS, secret)
    assert wire.verify(body, wire.IPN_FIELDS, access_key, secret)
    assert not wire.verify(body, wire.IPN_FIELDS, access_key + "x", secret)
    assert not wire.verify(body, wire.IPN_FIELDS, access_key, secret + "x")


@given(ipns(), st.sampled_from(sorted(set(wire.IPN_FIELDS) - {"accessKey"})), st.data())
def test_any_changed_field_breaks_the_signature(
    body: dict[str, Any], name: str, data: st.DataObject
) -> None:
    body["signature"] = wire.sign({**body, "accessKey": "k"}, wire.IPN_FIELDS, "s")
    if name in wire.INTEGER_FIELDS:
        other = data.draw(integers.filter(lambda v: v != body[name]))
    else:
        other = data.draw(texts.filter(lambda v: v != body[name]))
    changed = {**body, name: other}
    assert not wire.verify(changed, wire.IPN_FIELDS, "k", "s")


@given(integers)
def test_integers_sign_as_written_whole_numbers(amount: int) -> None:
    # A JSON number that a parser read as a whole float signs like the integer MoMo wrote.
    as_int = wire.sign({"amount": amount}, wire.REFUND_FIELDS, "s")
    assert wire.sign({"amount": float(amount)}, wire.REFUND_FIELDS, "s") == as_int
    assert wire.raw_text({"amount": amount}, ("amount",)) == f"amount={amount}"


def test_fractions_and_booleans_are_never_signed() -> None:
    with pytest.raises(ValueError):
        wire.raw_text({"amount": 1000.5}, ("amount",))
    with pytest.raises(ValueError):
        wire.raw_text({"amount": True}, ("amount",))
    body = {"amount": 1000.5, "signature": "00"}
    assert not wire.verify(body, ("amount",), "k", "s")


@pytest.mark.parametrize(
    ("code", "final"),
    [(0, True), (1001, True), (1006, True), (1005, True)]
    + [(code, False) for code in (9000, 1000, 7000, 7002, 8000)]
    + [(code, False) for code in (10, 11, 12, 13, 20, 21, 22, 40, 43, 47, 98, 99)],
)
def test_final_codes(code: int, final: bool) -> None:
    assert wire.is_final(code) is final


def test_api_request_codes_are_exactly_banks_md() -> None:
    expected = {10, 11, 12, 13, 20, 21, 22, 40, 41, 42, 43, 44, 45, 46, 47, 98, 99}
    assert expected == wire.API_REQUEST_CODES


@pytest.mark.parametrize(
    ("order_id", "ok"),
    [("PH20261128000001", True), ("a-b_c.d", True), ("-a", False), ("a-", False), ("a b", False),
     ("", False), ("x" * 51, False)],
)  # fmt: skip
def test_order_id_pattern(order_id: str, ok: bool) -> None:
    assert wire.is_order_id(order_id) is ok


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10) | st.integers(), max_size=5))
def test_extra_data_round_trips(data: dict[str, Any]) -> None:
    assert wire.decode_extra_data(wire.encode_extra_data(data)) == data
