"""Portal request bodies: every class of bad input CONTRACT §3 names, and the normal form."""

from __future__ import annotations

import copy
import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.api.schemas import parse_payment_request, parse_refund_request
from payhub.domain import requests as rq
from payhub.domain.requests import (
    DossierRef,
    Item,
    ItemKind,
    Payer,
    PaymentRequest,
    RefundRequestBody,
)
from payhub.errors import ProblemError
from tests.factories import CONTRACT_EXAMPLE

BANKS = frozenset({"vnpay", "momo", "vietqr"})


def body(**changes: Any) -> dict[str, Any]:
    """The contract's example with top-level ``changes``; ``None`` deletes a field."""
    result = copy.deepcopy(CONTRACT_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def parse(value: object) -> PaymentRequest:
    return parse_payment_request(value, known_banks=BANKS)


def errors_of(value: object) -> dict[str, str]:
    with pytest.raises(ProblemError) as caught:
        parse(value)
    problem = caught.value
    assert problem.code == "validation_failed"
    assert problem.status == 422
    return {error.field: error.message for error in problem.errors}


def one_item(amount: object) -> dict[str, Any]:
    return body(
        items=[{"kind": "fee", "code": "X", "description": "d", "amount": amount}],
        amount=amount,
    )


# ------------------------------------------------------------------ the happy path


def test_contract_example_parses() -> None:
    parsed = parse(CONTRACT_EXAMPLE)
    assert parsed.dossier == DossierRef(
        code="H29.17-261127-0001",
        agency_code="H29.17",
        procedure_code="1.004227",
        agency_name="UBND quận Ba Đình",
    )
    assert parsed.payer == Payer("Nguyễn Văn An", "001090001234", "0912345678")
    assert parsed.items == (
        Item(ItemKind.CHARGE, "LPTB", "Lệ phí trước bạ xe máy", 2400000),
        Item(ItemKind.FEE, "PCD", "Phí cấp đăng ký", 150000),
    )
    assert parsed.amount == 2550000
    assert parsed.currency == "VND"
    assert parsed.bank == "vnpay"
    assert parsed.expires_in == 900
    assert parsed.description == "optional, ≤ 255 chars"


def test_canonical_is_plain_json_and_round_trips() -> None:
    parsed = parse(CONTRACT_EXAMPLE)
    canonical = parsed.canonical()
    assert json.loads(json.dumps(canonical)) == canonical
    assert canonical["items"] == CONTRACT_EXAMPLE["items"]
    assert canonical["dossier"] == CONTRACT_EXAMPLE["dossier"]
    assert parse(canonical) == parsed


def test_minimal_body_gets_defaults() -> None:
    minimal = {
        "dossier": {"code": "D1", "agency_code": "A"},
        "payer": {"name": "An"},
        "items": [{"kind": "tax", "code": "T", "description": "Thuế", "amount": 1}],
        "amount": 1,
        "currency": "VND",
        "return_url": "https://portal.example/back",
    }
    parsed = parse(minimal)
    assert parsed.bank is None
    assert parsed.expires_in == rq.DEFAULT_EXPIRES_IN == 900
    assert parsed.description is None
    assert parsed.payer == Payer("An")
    assert parsed.dossier == DossierRef("D1", "A")
    canonical = parsed.canonical()
    assert canonical["bank"] is None and canonical["expires_in"] == 900


def test_null_and_blank_optionals_count_as_absent() -> None:
    value = body(bank=None, description="   ")
    value["dossier"]["procedure_code"] = None
    value["payer"]["phone"] = ""
    value["expires_in"] = None
    parsed = parse(value)
    assert parsed.bank is None
    assert parsed.description is None
    assert parsed.dossier.procedure_code is None
    assert parsed.payer.phone is None
    assert parsed.expires_in == 900


def test_equivalent_bodies_share_a_fingerprint() -> None:
    reordered = dict(reversed(list(body().items())))
    reordered["payer"] = {**reordered["payer"], "name": "  Nguyễn Văn An "}
    reordered["description"] = unicodedata.normalize("NFD", CONTRACT_EXAMPLE["description"])
    assert parse(reordered).fingerprint() == parse(body()).fingerprint()
    assert parse(body(expires_in=None)).fingerprint() == parse(body()).fingerprint()
    assert parse(body(expires_in=901)).fingerprint() != parse(body()).fingerprint()


def test_every_item_kind_is_accepted() -> None:
    for kind in ("fee", "charge", "tax", "social_insurance", "fine"):
        value = one_item(5)
        value["items"][0]["kind"] = kind
        assert parse(value).items[0].kind == kind


# ------------------------------------------------------------------ malformed


@pytest.mark.parametrize("value", [[], [CONTRACT_EXAMPLE], "{}", None, 1, 1.5, True])
def test_a_body_that_is_not_an_object_is_malformed(value: object) -> None:
    with pytest.raises(ProblemError) as caught:
        parse(value)
    assert caught.value.code == "malformed_request"
    assert caught.value.status == 400
    with pytest.raises(ProblemError) as caught:
        parse_refund_request(value)
    assert caught.value.code == "malformed_request"


# ------------------------------------------------------------------ missing and unknown


@pytest.mark.parametrize("field", rq.PAYMENT_REQUIRED)
def test_missing_top_level_field(field: str) -> None:
    value = body()
    del value[field]
    assert errors_of(value)[field] == "is required"


@pytest.mark.parametrize(
    ("section", "field"),
    [("dossier", "code"), ("dossier", "agency_code"), ("payer", "name")],
)
def test_missing_nested_field(section: str, field: str) -> None:
    value = body()
    del value[section][field]
    assert errors_of(value)[f"{section}.{field}"] == "is required"
    value[section][field] = " \t "
    assert errors_of(value)[f"{section}.{field}"] == "is required"


@pytest.mark.parametrize("field", rq.ITEM_FIELDS)
def test_missing_item_field(field: str) -> None:
    value = body()
    del value["items"][1][field]
    assert errors_of(value)[f"items[1].{field}"] == "is required"


def test_unknown_fields_at_every_level() -> None:
    value = body(extra=1)
    value["dossier"]["agency"] = "x"
    value["payer"]["email"] = "a@b.c"
    value["items"][1]["quantity"] = 2
    value["items"][0]["weird key"] = 1
    errors = errors_of(value)
    assert errors == {
        "extra": "unknown field",
        "dossier.agency": "unknown field",
        "payer.email": "unknown field",
        "items[1].quantity": "unknown field",
        'items[0]["weird key"]': "unknown field",
    }


def test_unknown_refund_field() -> None:
    with pytest.raises(ProblemError) as caught:
        parse_refund_request({"amount": 1, "currency": "VND"})
    assert [(e.field, e.message) for e in caught.value.errors] == [("currency", "unknown field")]


# ------------------------------------------------------------------ types


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"dossier": "H29"}, "dossier", "must be an object"),
        ({"payer": ["An"]}, "payer", "must be an object"),
        ({"items": {"kind": "fee"}}, "items", "must be an array"),
        ({"items": [1]}, "items[0]", "must be an object"),
        ({"currency": 704}, "currency", "must be a string"),
        ({"bank": True}, "bank", "must be a string"),
        ({"return_url": {"href": "https://x"}}, "return_url", "must be a string"),
        ({"expires_in": "900"}, "expires_in", "must be an integer"),
        ({"expires_in": 900.0}, "expires_in", "must be an integer"),
        ({"expires_in": True}, "expires_in", "must be an integer"),
        ({"description": 5}, "description", "must be a string"),
    ],
)
def test_wrong_types(changes: dict[str, Any], field: str, message: str) -> None:
    assert errors_of(body(**changes))[field] == message


def test_wrong_nested_types() -> None:
    value = body()
    value["dossier"]["code"] = 12
    value["payer"]["name"] = ["Nguyễn"]
    value["payer"]["id_number"] = 1090001234
    value["items"][0]["kind"] = None
    value["items"][1]["description"] = False
    assert errors_of(value) == {
        "dossier.code": "must be a string",
        "payer.name": "must be a string",
        "payer.id_number": "must be a string",
        "items[0].kind": "is required",
        "items[1].description": "must be a string",
    }


# ------------------------------------------------------------------ amounts


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "must be at least 1"),
        (-1, "must be at least 1"),
        (-(10**30), "must be at least 1"),
        (1.0, "must be an integer"),
        (2.5, "must be an integer"),
        (float("nan"), "must be an integer"),
        (float("inf"), "must be an integer"),
        (True, "must be an integer"),
        (False, "must be an integer"),
        ("100", "must be an integer"),
        (100_000_000_001, "must be at most 100000000000"),
        (10**400, "must be at most 100000000000"),
    ],
)
def test_bad_amounts(amount: object, message: str) -> None:
    errors = errors_of(one_item(amount))
    assert errors["items[0].amount"] == message
    assert errors["amount"] == message


def test_largest_amount_is_accepted() -> None:
    assert parse(one_item(rq.MAX_PAYMENT)).amount == 100_000_000_000


def test_amount_must_equal_the_sum_of_items() -> None:
    assert errors_of(body(amount=2550001)) == {
        "amount": "must equal the sum of the item amounts (2550000)"
    }


def test_items_may_not_add_up_beyond_the_maximum() -> None:
    item = {"kind": "fee", "code": "X", "description": "d", "amount": rq.MAX_PAYMENT}
    errors = errors_of(body(items=[item, item], amount=2 * rq.MAX_PAYMENT))
    assert errors == {"amount": "must be at most 100000000000"}


def test_item_count_bounds() -> None:
    item = {"kind": "fee", "code": "X", "description": "d", "amount": 1}
    assert errors_of(body(items=[], amount=1)) == {"items": "must contain at least 1 item"}
    assert parse(body(items=[item] * 50, amount=50)).amount == 50
    assert errors_of(body(items=[item] * 51, amount=51)) == {
        "items": "must contain at most 50 items"
    }


# ------------------------------------------------------------------ business fields


@pytest.mark.parametrize("currency", ["USD", "vnd", "VNĐ", "đ"])
def test_only_vnd(currency: str) -> None:
    assert errors_of(body(currency=currency)) == {"currency": "must be 'VND'"}


def test_unknown_item_kind() -> None:
    value = body()
    value["items"][0]["kind"] = "donation"
    assert errors_of(value)["items[0].kind"].startswith("must be one of fee, charge")


def test_unknown_bank() -> None:
    assert errors_of(body(bank="acb"))["bank"].startswith("unknown bank")
    with pytest.raises(ProblemError):
        parse_payment_request(body(), known_banks=())


@pytest.mark.parametrize(
    "code",
    ["H29.17/0001", "hồ-sơ", "a b", "x" * 65, "dossier?x=1", "%2e%2e", "H29\u200b", ".", ".."],
)
def test_bad_dossier_codes(code: str) -> None:
    value = body()
    value["dossier"]["code"] = code
    assert "dossier.code" in errors_of(value)


@pytest.mark.parametrize("code", ["x" * 64, "a", "A.b_c-9", "...", "-", ".a", " H29.17 "])
def test_good_dossier_codes(code: str) -> None:
    value = body()
    value["dossier"]["code"] = code
    assert parse(value).dossier.code == code.strip()


@pytest.mark.parametrize(
    "url",
    [
        "http://portal.example/back",
        "http://localhost.evil.example/",
        "http://127.0.0.2/",
        "ftp://portal.example/",
        "javascript:alert(1)",
        "//portal.example/back",
        "/relative",
        "https://",
        "https://user:secret@portal.example/",
        "https://portal.example/a b",
        "https://portal.example:99999/",
        "https://[::1",
        "https://hồsơ.vn/",
        "https://portal.example/" + "x" * 2048,
    ],
)
def test_bad_return_urls(url: str) -> None:
    assert "return_url" in errors_of(body(return_url=url))


@pytest.mark.parametrize(
    "url",
    [
        "https://portal.example/paid?x=1#y",
        "HTTPS://PORTAL.EXAMPLE/",
        "http://localhost:3000/paid",
        "http://127.0.0.1/paid",
        "http://[::1]:8080/paid",
        "http://LOCALHOST/",
    ],
)
def test_good_return_urls(url: str) -> None:
    assert parse(body(return_url=url)).return_url == url


@pytest.mark.parametrize(
    ("seconds", "ok"), [(299, False), (300, True), (86400, True), (86401, False)]
)
def test_expires_in_bounds(seconds: int, ok: bool) -> None:
    if ok:
        assert parse(body(expires_in=seconds)).expires_in == seconds
    else:
        assert "expires_in" in errors_of(body(expires_in=seconds))


@pytest.mark.parametrize("id_number", ["001090001234", "123456789", " 123456789 "])
def test_good_id_numbers(id_number: str) -> None:
    value = body()
    value["payer"]["id_number"] = id_number
    assert parse(value).payer.id_number == id_number.strip()


@pytest.mark.parametrize(
    "id_number",
    ["12345678", "1234567890", "12345678901", "0010900012345", "00109000123A", "٠١٢٣٤٥٦٧٨"],
)
def test_bad_id_numbers(id_number: str) -> None:
    value = body()
    value["payer"]["id_number"] = id_number
    assert "payer.id_number" in errors_of(value)


@pytest.mark.parametrize(
    ("phone", "stored"),
    [
        ("0912345678", "0912345678"),
        ("+84912345678", "0912345678"),
        ("+84 91 234 5678", "0912345678"),
        ("84912345678", "0912345678"),
        ("0084912345678", "0912345678"),
        ("091.234.5678", "0912345678"),
        ("(+84) 912-345-678", "0912345678"),
        ("0363456789", "0363456789"),
        ("02438253456", "02438253456"),
        ("+842438253456", "02438253456"),
    ],
)
def test_phones_are_normalised(phone: str, stored: str) -> None:
    value = body()
    value["payer"]["phone"] = phone
    assert parse(value).payer.phone == stored


@pytest.mark.parametrize(
    "phone",
    [
        "091234567",
        "09123456789",
        "+1 650 555 1234",
        "0112345678",
        "+840912345678",
        "hotline",
        "0９12345678",
    ],
)
def test_bad_phones(phone: str) -> None:
    value = body()
    value["payer"]["phone"] = phone
    assert "payer.phone" in errors_of(value)


def test_length_limits() -> None:
    value = body(description="d" * 256)
    value["payer"]["name"] = "N" * 256
    value["dossier"]["agency_name"] = "A" * 256
    value["dossier"]["agency_code"] = "C" * 65
    value["dossier"]["procedure_code"] = "P" * 65
    value["items"][0]["code"] = "X" * 65
    value["items"][1]["description"] = "D" * 256
    assert errors_of(value) == {
        "description": "must be at most 255 characters",
        "payer.name": "must be at most 255 characters",
        "dossier.agency_name": "must be at most 255 characters",
        "dossier.agency_code": "must be at most 64 characters",
        "dossier.procedure_code": "must be at most 64 characters",
        "items[0].code": "must be at most 64 characters",
        "items[1].description": "must be at most 255 characters",
    }
    value = body(description="đ" * 255)
    value["payer"]["name"] = "Ằ" * 255
    assert parse(value).payer.name == "Ằ" * 255


# ------------------------------------------------------------------ text


def test_decomposed_vietnamese_comes_out_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", "Nguyễn Văn An")
    assert decomposed != "Nguyễn Văn An"
    value = body()
    value["payer"]["name"] = decomposed
    value["items"][0]["description"] = unicodedata.normalize("NFD", "Lệ phí trước bạ")
    parsed = parse(value)
    assert parsed.payer.name == "Nguyễn Văn An"
    assert unicodedata.is_normalized("NFC", parsed.payer.name)
    assert parsed.items[0].description == "Lệ phí trước bạ"


def test_surrounding_whitespace_is_stripped() -> None:
    value = body(description="\n  Nộp phí \t")
    value["payer"]["name"] = "\u00a0 Nguyễn Văn An  "
    parsed = parse(value)
    assert parsed.description == "Nộp phí"
    assert parsed.payer.name == "Nguyễn Văn An"


@pytest.mark.parametrize(
    "text",
    [
        "An\x00",
        "A\nn",
        "Nguyễn\x1b[31m",
        "An\x7f",
        "An\x85b",
        "An\u202eb",
        "Ngu\u200byễn",
        "An\ud800",
    ],
)
def test_control_and_format_characters_are_refused(text: str) -> None:
    value = body()
    value["payer"]["name"] = text
    assert errors_of(value) == {"payer.name": "must not contain control or format characters"}


# ------------------------------------------------------------------ all at once


def test_all_errors_are_reported_at_once_with_paths() -> None:
    value = body(amount="2550000", currency="USD", bank="acb", expires_in=10, colour="red")
    value["dossier"]["code"] = "bad code!"
    del value["payer"]["name"]
    value["items"][0]["amount"] = 0
    value["items"][1]["kind"] = "gift"
    with pytest.raises(ProblemError) as caught:
        parse(value)
    problem = caught.value
    fields = [error.field for error in problem.errors]
    assert sorted(fields) == sorted(
        [
            "colour",
            "dossier.code",
            "payer.name",
            "items[0].amount",
            "items[1].kind",
            "amount",
            "currency",
            "bank",
            "expires_in",
        ]
    )
    assert problem.detail.startswith("9 fields are invalid")
    body_dict = problem.to_dict()
    assert body_dict["code"] == "validation_failed"
    assert {"field": "items[0].amount", "message": "must be at least 1"} in body_dict["errors"]


def test_reported_errors_are_capped() -> None:
    value = body(**{f"x{i}": i for i in range(500)})
    with pytest.raises(ProblemError) as caught:
        parse(value)
    assert len(caught.value.errors) == rq.MAX_REPORTED_ERRORS
    assert caught.value.detail.startswith("500 fields are invalid")


# ------------------------------------------------------------------ refunds


def test_refund_bodies() -> None:
    assert parse_refund_request({"amount": 150000, "reason": " Nộp thừa "}) == RefundRequestBody(
        150000, "Nộp thừa"
    )
    assert parse_refund_request({"amount": 1}) == RefundRequestBody(1, "")
    assert parse_refund_request({"amount": 1, "reason": None}).reason == ""
    for amount in (0, -5, 1.0, True, "1", None, 10**12):
        with pytest.raises(ProblemError) as caught:
            parse_refund_request({"amount": amount})
        assert [e.field for e in caught.value.errors] == ["amount"]
    with pytest.raises(ProblemError) as caught:
        parse_refund_request({"amount": 1, "reason": "r" * 256})
    assert [e.field for e in caught.value.errors] == ["reason"]


# ------------------------------------------------------------------ properties

_KEYS = st.sampled_from(
    [*rq.PAYMENT_FIELDS, *rq.DOSSIER_FIELDS, *rq.PAYER_FIELDS, *rq.ITEM_FIELDS, "x"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**13), max_value=10**13)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["VND", "vnpay", "fee", "https://a.example/", "0912345678", "H29"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_arbitrary_values_raise_only_problems(value: object) -> None:
    try:
        parse(value)
    except ProblemError as problem:
        assert problem.code in ("malformed_request", "validation_failed")
    try:
        parse_refund_request(value)
    except ProblemError as problem:
        assert problem.code in ("malformed_request", "validation_failed")


@st.composite
def _mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """The valid example with one field somewhere replaced by an arbitrary value."""
    value = body()
    section = draw(st.sampled_from(["", "dossier", "payer", "items"]))
    if section == "":
        target: dict[str, Any] = value
        key = draw(st.sampled_from([*rq.PAYMENT_FIELDS, "x"]))
    elif section == "items":
        target = value["items"][draw(st.integers(0, 1))]
        key = draw(st.sampled_from([*rq.ITEM_FIELDS, "x"]))
    else:
        target = value[section]
        key = draw(st.sampled_from([*target, "x"]))
    target[key] = draw(_JSON)
    return value


@settings(max_examples=400, deadline=None)
@given(_mutated_bodies())
def test_mutated_bodies_raise_only_validation_problems(value: dict[str, Any]) -> None:
    try:
        parsed = parse(value)
    except ProblemError as problem:
        assert problem.code == "validation_failed"
        assert problem.errors
    else:
        assert parse(parsed.canonical()) == parsed
        json.dumps(parsed.canonical())


_VIETNAMESE = st.text(
    alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂĐÊÔƠƯ \u0300\u0301\u0303\u0309\u0323",
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_VIETNAMESE)
def test_names_are_stored_nfc_and_stripped(name: str) -> None:
    value = body()
    value["payer"]["name"] = name
    try:
        parsed = parse(value)
    except ProblemError as problem:
        assert unicodedata.normalize("NFC", name).strip() == ""
        assert [e.field for e in problem.errors] == ["payer.name"]
    else:
        assert parsed.payer.name == unicodedata.normalize("NFC", name).strip()
