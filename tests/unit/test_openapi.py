"""The OpenAPI document: well-formed 3.1, complete, and agreeing with the validator.

``openapi-spec-validator`` is not installed, so the structure is checked here: the version,
every ``$ref`` resolving, every route of CONTRACT.md present, operation ids unique, path
parameters declared. A small checker for the JSON Schema keywords the document uses then
shows that what the validator accepts the schema accepts, and that both refuse the same
boundary values.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.api import schemas as rq_parse
from payhub.api.openapi import PROBLEM_WHEN, openapi_document
from payhub.domain import requests as rq
from payhub.domain.money import MAX_PAYMENT, MIN_PAYMENT
from payhub.domain.states import PaymentStatus
from payhub.errors import PROBLEM_CODES, ProblemError
from tests.unit.test_payment_request import BANKS, CONTRACT_EXAMPLE

ROUTES = {
    ("post", "/v1/payments"),
    ("get", "/v1/payments/{id}"),
    ("get", "/v1/payments"),
    ("post", "/v1/payments/{id}/cancel"),
    ("post", "/v1/payments/{id}/refunds"),
    ("get", "/v1/dossiers/{code}"),
    ("get", "/v1/events"),
    ("post", "/v1/finance/reconciliations"),
    ("get", "/v1/finance/reconciliations/{id}"),
    ("get", "/v1/finance/reconciliations/{id}/report.csv"),
    ("post", "/v1/finance/exceptions/{id}/resolve"),
    ("get", "/v1/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/finance"),
    ("get", "/finance/login"),
    ("get", "/finance/logout"),
    ("get", "/finance/runs/{run}/report.csv"),
    ("post", "/finance/exceptions/{exception}/resolve"),
}
FINANCE_PAGE = {
    "/finance",
    "/finance/login",
    "/finance/logout",
    "/finance/runs/{run}/report.csv",
    "/finance/exceptions/{exception}/resolve",
}
UNSIGNED = {
    "/v1/openapi.json",
    "/.well-known/jwks.json",
    "/healthz",
    "/readyz",
    "/metrics",
    *FINANCE_PAGE,  # a session cookie from `payhub finance login`, not a request signature
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(name="doc", scope="module")
def _doc() -> dict[str, Any]:
    return openapi_document("https://hub.example/")


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, pointer
        node = node[part]
    return node


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


# ------------------------------------------------------------------ structure


def test_is_plain_json(doc: dict[str, Any]) -> None:
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text) == doc


def test_is_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": "https://hub.example"}]
    assert set(doc) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    refs = [node["$ref"] for node in walk(doc) if isinstance(node, dict) and "$ref" in node]
    assert refs
    for pointer in refs:
        assert pointer.startswith("#/components/")
        resolve(doc, pointer)


def test_every_component_is_used(doc: dict[str, Any]) -> None:
    refs = {node["$ref"] for node in walk(doc) if isinstance(node, dict) and "$ref" in node}
    for kind in ("schemas", "parameters", "headers"):
        for name in doc["components"][kind]:
            assert f"#/components/{kind}/{name}" in refs, (kind, name)


def test_every_contract_route_is_present(doc: dict[str, Any]) -> None:
    assert {(method, path) for method, path, _ in operations(doc)} == ROUTES


def test_operation_ids_unique_and_responses_present(doc: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))
    for _, _, operation in operations(doc):
        assert operation["responses"]
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)", status)
            assert response.get("description") or "$ref" in response


def test_path_parameters_are_declared(doc: dict[str, Any]) -> None:
    for _, path, operation in operations(doc):
        declared = set()
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = resolve(doc, parameter["$ref"])
            assert parameter["in"] in {"query", "header", "path", "cookie"}
            if parameter["in"] == "path":
                assert parameter["required"] is True
                declared.add(parameter["name"])
        assert declared == set(re.findall(r"\{(\w+)\}", path)), path


def test_security(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["Signature"]["type"] == "apiKey"
    assert schemes["Signature"]["in"] == "header"
    assert schemes["Signature"]["name"] == "Signature"
    assert "RFC 9421" in schemes["Signature"]["description"]
    for requirement in doc["security"]:
        assert set(requirement) <= set(schemes)
    for _, path, operation in operations(doc):
        assert ("security" in operation and operation["security"] == []) == (path in UNSIGNED)


def test_idempotent_routes(doc: dict[str, Any]) -> None:
    for path in ("/v1/payments", "/v1/payments/{id}/refunds"):
        operation = doc["paths"][path]["post"]
        assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation["parameters"]
        replay = operation["responses"]["200"]
        assert "Idempotency-Replayed" in replay["headers"]
        assert "201" in operation["responses"]
    key = doc["components"]["parameters"]["IdempotencyKey"]
    assert key["required"] is True and key["in"] == "header"


# ------------------------------------------------------------------ problems


def test_problem_schema_codes(doc: dict[str, Any]) -> None:
    problem = doc["components"]["schemas"]["Problem"]
    assert problem["properties"]["code"]["enum"] == list(PROBLEM_CODES)
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert set(PROBLEM_WHEN) == set(PROBLEM_CODES)


def test_problem_responses_match_their_status(doc: dict[str, Any]) -> None:
    for _, _, operation in operations(doc):
        for status, response in operation["responses"].items():
            content = response.get("content", {})
            if "application/problem+json" not in content:
                continue
            codes = content["application/problem+json"]["schema"]["properties"]["code"]["enum"]
            assert codes
            assert all(PROBLEM_CODES[code][0] == int(status) for code in codes)


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        (
            "post",
            "/v1/payments",
            {
                "idempotency_key_required",
                "idempotency_conflict",
                "idempotency_in_flight",
                "validation_failed",
                "bank_unavailable",
                "payload_too_large",
                "unsupported_media_type",
                "signature_missing",
                "rate_limited",
            },
        ),
        ("post", "/v1/payments/{id}/cancel", {"invalid_state", "not_found"}),
        ("post", "/v1/payments/{id}/refunds", {"refund_not_supported", "invalid_state"}),
        ("get", "/v1/payments/{id}", {"not_found", "forbidden", "signature_replayed"}),
        ("get", "/readyz", {"not_ready"}),
    ],
)
def test_route_problems(doc: dict[str, Any], method: str, path: str, codes: set[str]) -> None:
    responses = doc["paths"][path][method]["responses"]
    listed = set()
    for response in responses.values():
        content = response.get("content", {}).get("application/problem+json")
        if content:
            listed.update(content["schema"]["properties"]["code"]["enum"])
    assert codes <= listed


# ------------------------------------------------------------------ schemas vs validator


def test_limits_come_from_the_validator(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    request = schemas["PaymentRequest"]
    props = request["properties"]
    assert request["additionalProperties"] is False
    assert request["required"] == list(rq.PAYMENT_REQUIRED)
    assert list(props) == list(rq.PAYMENT_FIELDS)
    assert props["items"]["minItems"] == rq.MIN_ITEMS == 1
    assert props["items"]["maxItems"] == rq.MAX_ITEMS == 50
    assert props["amount"]["minimum"] == MIN_PAYMENT == 1
    assert props["amount"]["maximum"] == MAX_PAYMENT == 100_000_000_000
    assert props["currency"]["const"] == "VND"
    assert props["expires_in"]["minimum"] == rq.MIN_EXPIRES_IN == 300
    assert props["expires_in"]["maximum"] == rq.MAX_EXPIRES_IN == 86_400
    assert props["expires_in"]["default"] == rq.DEFAULT_EXPIRES_IN == 900
    assert props["return_url"]["maxLength"] == rq.RETURN_URL_MAX_LENGTH
    assert props["description"]["maxLength"] == rq.DESCRIPTION_MAX_LENGTH

    for name, fields, required in (
        ("DossierInput", rq.DOSSIER_FIELDS, rq.DOSSIER_REQUIRED),
        ("PayerInput", rq.PAYER_FIELDS, rq.PAYER_REQUIRED),
        ("Item", rq.ITEM_FIELDS, rq.ITEM_REQUIRED),
        ("RefundRequest", rq.REFUND_FIELDS, rq.REFUND_REQUIRED),
    ):
        assert schemas[name]["additionalProperties"] is False
        assert list(schemas[name]["properties"]) == list(fields)
        assert schemas[name]["required"] == list(required)

    dossier = schemas["DossierInput"]["properties"]
    assert dossier["code"]["maxLength"] == rq.DOSSIER_CODE_MAX_LENGTH == 64
    assert dossier["code"]["pattern"] == rq.DOSSIER_CODE_PATTERN
    assert dossier["agency_code"]["maxLength"] == rq.CODE_MAX_LENGTH
    assert dossier["procedure_code"]["maxLength"] == rq.CODE_MAX_LENGTH
    assert dossier["agency_name"]["maxLength"] == rq.NAME_MAX_LENGTH
    payer = schemas["PayerInput"]["properties"]
    assert payer["name"]["maxLength"] == rq.NAME_MAX_LENGTH
    assert payer["id_number"]["pattern"] == rq.ID_NUMBER_PATTERN
    item = schemas["Item"]["properties"]
    assert item["kind"]["enum"] == [kind.value for kind in rq.ItemKind]
    assert item["code"]["maxLength"] == rq.CODE_MAX_LENGTH
    assert item["description"]["maxLength"] == rq.DESCRIPTION_MAX_LENGTH
    assert item["amount"]["minimum"] == MIN_PAYMENT
    assert item["amount"]["maximum"] == MAX_PAYMENT
    refund = schemas["RefundRequest"]["properties"]
    assert refund["amount"]["maximum"] == MAX_PAYMENT
    assert refund["reason"]["maxLength"] == rq.DESCRIPTION_MAX_LENGTH


def test_every_schema_object_is_closed_in_request_bodies(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for name in ("PaymentRequest", "DossierInput", "PayerInput", "Item", "RefundRequest"):
        for node in walk(schemas[name]):
            if isinstance(node, dict) and node.get("type") == "object":
                assert node["additionalProperties"] is False, name


def test_payment_object_matches_the_contract(doc: dict[str, Any]) -> None:
    payment = doc["components"]["schemas"]["Payment"]
    fields = {
        "id",
        "status",
        "dossier",
        "amount",
        "currency",
        "items",
        "bank",
        "bank_reference",
        "payment_url",
        "qr",
        "created_at",
        "expires_at",
        "paid_at",
        "refunded_amount",
        "failure_code",
    }
    assert set(payment["properties"]) == fields == set(payment["required"])
    assert payment["properties"]["status"]["enum"] == [s.value for s in PaymentStatus]
    for nullable in ("payment_url", "qr", "paid_at", "failure_code"):
        assert "null" in payment["properties"][nullable]["type"]
    assert "id_number" not in json.dumps(payment)
    event = doc["components"]["schemas"]["Event"]
    assert set(event["required"]) == {"id", "type", "timestamp", "data"}
    assert set(event["properties"]["type"]["enum"]) == {
        "payment.succeeded",
        "payment.failed",
        "payment.expired",
        "payment.cancelled",
        "refund.succeeded",
        "refund.failed",
        "dossier.overpaid",
    }
    page = doc["components"]["schemas"]["EventPage"]
    assert set(page["required"]) == {"data", "has_more"}
    limit = next(p for p in doc["paths"]["/v1/events"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500


def test_bank_enum_when_banks_are_given() -> None:
    doc = openapi_document("https://hub.example", banks=["vnpay", "momo"])
    bank = doc["components"]["schemas"]["PaymentRequest"]["properties"]["bank"]
    assert bank["enum"] == ["momo", "vnpay", None]


def test_callers_get_their_own_copy() -> None:
    first = openapi_document("https://hub.example")
    first["components"]["schemas"]["PaymentRequest"]["examples"][0]["amount"] = 1
    second = openapi_document("https://hub.example")
    assert second["components"]["schemas"]["PaymentRequest"]["examples"][0]["amount"] == 2550000


# A checker for the JSON Schema keywords the request schemas use; anything else fails loudly.
_KNOWN = {
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "description",
    "default",
    "examples",
    "format",
}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "null": lambda v: v is None,
}


def conforms(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    assert set(schema) <= _KNOWN, set(schema) - _KNOWN
    if "$ref" in schema:
        return conforms(doc, resolve(doc, schema["$ref"]), value)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
    if type(value) is int and not (
        schema.get("minimum", value) <= value <= schema.get("maximum", value)
    ):
        return False
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        if "items" in schema and not all(conforms(doc, schema["items"], v) for v in value):
            return False
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if any(key not in value for key in schema.get("required", ())):
            return False
        for key, item in value.items():
            if key in props:
                if not conforms(doc, props[key], item):
                    return False
            elif schema.get("additionalProperties") is False:
                return False
    return True


def payment_schema(doc: dict[str, Any]) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/PaymentRequest"}
    resolve(doc, schema["$ref"])
    return schema


def test_the_contract_example_conforms(doc: dict[str, Any]) -> None:
    assert conforms(doc, payment_schema(doc), CONTRACT_EXAMPLE)
    for example in doc["components"]["schemas"]["PaymentRequest"]["examples"]:
        assert conforms(doc, payment_schema(doc), example)
        rq_parse.parse_payment_request(example, known_banks=BANKS)


def _with(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(CONTRACT_EXAMPLE)
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return body


_DELETE = object()
_ITEM = {"kind": "fee", "code": "X", "description": "d", "amount": 1}


@pytest.mark.parametrize(
    ("path", "value", "valid"),
    [
        ("dossier.code", "x" * 64, True),
        ("dossier.code", "x" * 65, False),
        ("dossier.code", "a/b", False),
        ("dossier.code", "..", False),
        ("dossier.code", "", False),
        ("dossier.agency_code", "c" * 64, True),
        ("dossier.agency_code", "c" * 65, False),
        ("dossier.agency_code", _DELETE, False),
        ("dossier.procedure_code", _DELETE, True),
        ("dossier.agency_name", "n" * 255, True),
        ("dossier.agency_name", "n" * 256, False),
        ("dossier.extra", 1, False),
        ("payer.name", "n" * 255, True),
        ("payer.name", "n" * 256, False),
        ("payer.name", _DELETE, False),
        ("payer.id_number", "123456789", True),
        ("payer.id_number", "1234567890", False),
        ("payer.phone", _DELETE, True),
        ("payer.extra", 1, False),
        ("items.0.amount", 0, False),
        ("items.0.amount", True, False),
        ("items.0.amount", 1.5, False),
        ("items.0.kind", "gift", False),
        ("items.0.code", "c" * 65, False),
        ("items.0.description", "d" * 256, False),
        ("items.0.extra", 1, False),
        ("items", [], False),
        ("currency", "USD", False),
        ("expires_in", 299, False),
        ("expires_in", 300, True),
        ("expires_in", 86400, True),
        ("expires_in", 86401, False),
        ("expires_in", _DELETE, True),
        ("return_url", "http://portal.example/", False),
        ("return_url", "http://localhost:8000/", True),
        ("return_url", "http://[::1]/", True),
        ("return_url", "https://x.example/" + "a" * 2048, False),
        ("return_url", _DELETE, False),
        ("description", "d" * 255, True),
        ("description", "d" * 256, False),
        ("bank", _DELETE, True),
        ("amount", MAX_PAYMENT + 1, False),
        ("extra", 1, False),
    ],
)
def test_schema_and_validator_agree_on_boundaries(
    doc: dict[str, Any], path: str, value: Any, valid: bool
) -> None:
    body = _with(path, value)
    assert conforms(doc, payment_schema(doc), body) is valid
    try:
        rq_parse.parse_payment_request(body, known_banks=BANKS)
    except ProblemError:
        assert not valid
    else:
        assert valid


def test_fifty_items_agree(doc: dict[str, Any]) -> None:
    for count, valid in ((50, True), (51, False)):
        body = _with("items", [_ITEM] * count)
        body["amount"] = count
        assert conforms(doc, payment_schema(doc), body) is valid


_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"]),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(
    name=_TEXT,
    description=_TEXT,
    code=st.text(alphabet="AZaz09._-", min_size=1, max_size=66),
    expires=st.integers(250, 90_000),
    amounts=st.lists(st.integers(0, MAX_PAYMENT // 50), min_size=1, max_size=51),
)
def test_whatever_the_validator_accepts_conforms_in_canonical_form(
    doc: dict[str, Any],
    name: str,
    description: str,
    code: str,
    expires: int,
    amounts: list[int],
) -> None:
    body = copy.deepcopy(CONTRACT_EXAMPLE)
    body["payer"]["name"] = name
    body["description"] = description
    body["dossier"]["code"] = code
    body["expires_in"] = expires
    body["items"] = [{**_ITEM, "amount": a} for a in amounts]
    body["amount"] = sum(amounts)
    try:
        parsed = rq_parse.parse_payment_request(body, known_banks=BANKS)
    except ProblemError:
        return
    assert conforms(doc, payment_schema(doc), parsed.canonical())
