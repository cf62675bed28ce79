"""The wire declarations: each documented grammar is exactly what the hub accepts.

The document's ``pattern`` for a field and the hub's check are the same text or derived
from the same source; these properties hold them to it on arbitrary input, so a rule
changed on one side only fails here, not in a portal's integration.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from payhub.api import schemas
from payhub.api.openapi import openapi_document
from payhub.domain import requests as rq
from payhub.errors import ProblemError

_ANY_TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=12
) | st.sampled_from(["", " ", " a ", "\tA\n", "a\u200bb", "\u00a0x", "x\x85", "\ud800"])


def _accepts(rule: schemas.Text, value: str) -> bool:
    try:
        rule.clean(value)
    except PydanticCustomError:
        return False
    return True


@cache
def _document() -> dict[str, Any]:
    return openapi_document("https://hub.example")["components"]["schemas"]


@settings(max_examples=600, deadline=None)
@given(_ANY_TEXT)
@example("Nguyễn Văn An")
@example("\U000e0001tag")
@example("\U000f0000")
def test_text_pattern_is_the_text_rule(value: str) -> None:
    if any("\ud800" <= char <= "\udfff" for char in value):
        # Lone surrogates: refused by the hub, unnameable in a pattern over Unicode text
        # (see forbidden_characters); the Python validator's answer is checked below.
        assert not _accepts(schemas.Text(rq.NAME_MAX_LENGTH), value)
        return
    document = _document()
    required = document["PayerInput"]["properties"]["name"]
    optional = document["PaymentRequest"]["properties"]["description"]
    name_rule = schemas.Text(rq.NAME_MAX_LENGTH)
    description_rule = schemas.Text(rq.DESCRIPTION_MAX_LENGTH, required=False)
    assert (re.search(required["pattern"], value) is not None) == _accepts(name_rule, value)
    assert (re.search(optional["pattern"], value) is not None) == _accepts(description_rule, value)


def test_forbidden_characters_are_the_refused_categories() -> None:
    pattern = re.compile(f"[{schemas.forbidden_characters()}]")
    space = re.compile(f"[{rq.WHITESPACE}]")
    for point in range(0x110000):
        char = chr(point)
        refused = unicodedata.category(char) in {"Cc", "Cf"}
        assert (pattern.match(char) is not None) == refused, hex(point)
        assert (space.match(char) is not None) == char.isspace(), hex(point)


def test_every_documented_pattern_compiles_for_other_validators() -> None:
    """A pattern a validator cannot compile is silently ignored by it (schemathesis did)."""
    document = openapi_document("https://hub.example", banks=["vnpay"])
    patterns = {
        node["pattern"]
        for node in _walk(document)
        if isinstance(node, dict) and isinstance(node.get("pattern"), str)
    }
    assert len(patterns) >= 8
    for pattern in patterns:
        validator = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
        for sample in ("", " x ", "H29.17", "0912345678", "https://a.example/", "\x01"):
            assert validator.is_valid(sample) == (re.search(pattern, sample) is not None), (
                pattern[:60],
                sample,
            )


def _walk(node: Any) -> Any:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


@st.composite
def _phone_like(draw: st.DrawFn) -> str:
    """Near-numbers: every prefix, any first digit, 7–11 digits, separators anywhere."""
    prefix = draw(st.sampled_from(["0", "+84", "84", "0084", "", "+", "00"]))
    digits = draw(st.text(alphabet="0123456789", min_size=7, max_size=11))
    text = prefix + digits
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(" .()-")) + text[at:]
    return text


_PHONE_CHARS = _phone_like() | st.text(alphabet="0123456789+ .()-84", max_size=20)


@settings(max_examples=800, deadline=None)
@given(_PHONE_CHARS | _ANY_TEXT)
@example("(+84) 912-345-678")
@example("+840912345678")
@example("84912345678")
@example("084912345678")
def test_phone_pattern_is_normalise_phone(value: str) -> None:
    stripped = value.strip()
    documented = re.fullmatch(rq.PHONE_PATTERN, value) is not None
    if not stripped:
        assert documented  # blank: absent
    else:
        assert documented == (rq.normalise_phone(stripped) is not None), value


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="Aa9._- \t/%", max_size=70) | _ANY_TEXT)
@example(".")
@example(" .. ")
@example("...")
@example("x" * 64)
@example(" " + "x" * 64)
def test_dossier_code_grammar_is_one_for_body_query_and_path(value: str) -> None:
    body = schemas.Text(
        rq.DOSSIER_CODE_MAX_LENGTH,
        grammar=rq.DOSSIER_CODE_PATTERN,
        grammar_message="bad",
    )
    query = schemas.dossier_code(value)
    in_body = _accepts(body, value)
    documented = (
        re.search(rq.DOSSIER_CODE_PATTERN, value) is not None
        and 1 <= len(value) <= rq.DOSSIER_CODE_MAX_LENGTH
    )
    assert in_body == (query is not None) == documented, value
    if query is not None:
        assert query == value.strip()


@pytest.mark.parametrize("code", [".", "..", "a/b", "hồ-sơ", "", " ", "x" * 65, "a\nb"])
def test_codes_create_refuses_are_refused_by_the_list_query(code: str) -> None:
    assert schemas.dossier_code(code) is None
    with pytest.raises(ProblemError) as caught:
        schemas.parse_payment_list_query({"dossier": code})
    assert caught.value.code == "validation_failed"
    assert [e.field for e in caught.value.errors] == ["dossier"]


_URLS = st.from_regex(rq.RETURN_URL_PATTERN, fullmatch=True) | st.text(
    alphabet="htps:/[]@.:1270lcaHTPS9x#?%", max_size=30
)


@settings(max_examples=300, deadline=None)
@given(_URLS | _ANY_TEXT)
@example("https://[2001:db8::1]/")
@example("https://user@portal.example/")
@example("http://localhost.evil.example/")
def test_return_url_pattern_is_the_return_url_rule(value: str) -> None:
    stripped = value.strip()
    if not stripped or len(value) > rq.RETURN_URL_MAX_LENGTH:
        return
    rule = schemas.Text(rq.RETURN_URL_MAX_LENGTH, grammar=rq.RETURN_URL_PATTERN)
    documented = re.fullmatch(rq.RETURN_URL_PATTERN, value) is not None
    assert documented == _accepts(rule, value), value
    if documented:
        assert rq.return_url_problem(stripped) is None


# ------------------------------------------------------------------ query strings


def _query_errors(query: dict[str, str]) -> dict[str, str]:
    with pytest.raises(ProblemError) as caught:
        schemas.parse_events_query(query)
    assert caught.value.code == "validation_failed"
    return {error.field: error.message for error in caught.value.errors}


@pytest.mark.parametrize(
    "limit", ["²", "٣", "１０", "1.5", "-1", "+5", " 5", "", "0x10", "1e2", "9" * 5000]
)
def test_limit_takes_ascii_digits_only(limit: str) -> None:
    # "²".isdigit() is True and int("²") raises: this was a 500.
    assert "limit" in _query_errors({"limit": limit})


@pytest.mark.parametrize(("limit", "expected"), [("1", 1), ("500", 500), ("007", 7)])
def test_limit_bounds(limit: str, expected: int) -> None:
    assert schemas.parse_events_query({"limit": limit}).limit == expected
    assert schemas.parse_events_query({}).limit == 100
    assert _query_errors({"limit": "0"}) == {"limit": "must be at least 1"}
    assert _query_errors({"limit": "501"}) == {"limit": "must be at most 500"}


@pytest.mark.parametrize("after", ["", " ", "evt_", "pay_01jdq0000000000000000000aa", "evt_X"])
def test_after_must_be_an_event_id(after: str) -> None:
    assert "after" in _query_errors({"after": after})


def test_unknown_query_parameters_are_named() -> None:
    assert _query_errors({"colour": "red", "limit": "5"}) == {"colour": "unknown parameter"}
    with pytest.raises(ProblemError) as caught:
        schemas.parse_payment_list_query({"dossier": "D1", "page": "2"})
    assert [(e.field, e.message) for e in caught.value.errors] == [("page", "unknown parameter")]
    assert schemas.parse_payment_list_query({"dossier": " D1 "}).dossier == "D1"


def test_the_documented_query_parameters_are_the_parsed_ones() -> None:
    paths = openapi_document("https://hub.example")["paths"]
    events = {p["name"]: p for p in paths["/v1/events"]["get"]["parameters"]}
    assert set(events) == set(schemas.EventsQuery.model_fields) == {"after", "limit"}
    assert events["after"]["schema"]["pattern"] == schemas.EVENT_ID_PATTERN
    assert events["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 100,
    }
    listing = paths["/v1/payments"]["get"]["parameters"]
    assert [(p["name"], p["required"]) for p in listing] == [("dossier", True)]
    assert listing[0]["schema"]["pattern"] == rq.DOSSIER_CODE_PATTERN
    dossier = paths["/v1/dossiers/{code}"]["get"]["parameters"][0]
    assert dossier["schema"]["pattern"] == rq.DOSSIER_CODE_PATTERN


# ------------------------------------------------------------------ the document's words


def test_the_document_says_what_the_behaviour_enforces() -> None:
    document = _document()
    request = document["PaymentRequest"]
    assert "sum of `items[].amount`" in request["properties"]["amount"]["description"]
    assert "`1.0`" in request["description"]
    assert "control" in document["PayerInput"]["properties"]["name"]["description"]
    assert "blank string" in request["properties"]["description"]["description"]
    assert "blank string" in document["DossierInput"]["properties"]["agency_name"]["description"]
    assert "refused" in request["properties"]["bank"]["description"]
    event_data = document["Event"]["properties"]["data"]
    assert {"$ref": "#/components/schemas/DossierSummary"} in event_data["anyOf"]
    assert "dossier.overpaid" in event_data["description"]


def test_blank_bank_is_refused_blank_text_is_absent() -> None:
    body = {
        "dossier": {"code": "D1", "agency_code": "A", "agency_name": ""},
        "payer": {"name": "An"},
        "items": [{"kind": "fee", "code": "X", "description": "d", "amount": 1}],
        "amount": 1,
        "currency": "VND",
        "return_url": "https://portal.example/",
        "description": "",
    }
    parsed = schemas.parse_payment_request(body, known_banks={"vnpay"})
    assert parsed.description is None and parsed.dossier.agency_name is None
    with pytest.raises(ProblemError) as caught:
        schemas.parse_payment_request({**body, "bank": " "}, known_banks={"vnpay"})
    assert [e.field for e in caught.value.errors] == ["bank"]
    bank = _document()["PaymentRequest"]["properties"]["bank"]  # no banks named: free text
    assert re.search(bank["pattern"], " ") is None and bank["minLength"] == 1
    assert re.search(bank["pattern"], " vnpay ") is not None
