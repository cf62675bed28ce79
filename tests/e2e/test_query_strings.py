"""Query strings reach the handlers only through their declared models: bad ones are 422.

Regressions: ``GET /v1/events?limit=²`` answered 500 (``str.isdigit`` accepts Unicode
digits, ``int`` does not), ``?dossier=..`` was accepted although create refuses that
code, and ``?after=`` (empty) silently restarted from the first event.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_portal_api import assert_problem
from tests.factories import Hub, payment_body


@pytest.mark.parametrize("limit", ["²", "٣", "１", "9" * 5000, "", "-1", "1.0"])
async def test_bad_limits_are_422_not_500(hub: Hub, limit: str) -> None:
    response = await hub.portal.request("GET", "/v1/events", params={"limit": limit})
    problem = assert_problem(response, 422, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == ["limit"]


async def test_empty_after_is_refused(hub: Hub) -> None:
    response = await hub.portal.request("GET", "/v1/events", params={"after": ""})
    problem = assert_problem(response, 422, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == ["after"]


@pytest.mark.parametrize("code", ["..", ".", "a b", "hồ-sơ", "x" * 65])
async def test_list_refuses_the_codes_create_refuses(hub: Hub, code: str) -> None:
    create = await hub.portal.create_payment(payment_body(code), f"k-{len(code)}")
    assert_problem(create, 422, "validation_failed")
    listing = await hub.portal.list_payments(code)
    problem = assert_problem(listing, 422, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == ["dossier"]


async def test_codes_are_looked_up_as_create_stored_them(hub: Hub) -> None:
    created = await hub.portal.create_payment(payment_body(" D-7.a "), "k-1")
    assert created.status == 201, created.body
    assert created.json()["dossier"]["code"] == "D-7.a"
    listed = await hub.portal.list_payments(" D-7.a ")
    assert [p["id"] for p in listed.json()["data"]] == [created.json()["id"]]
    dossier = await hub.portal.request("GET", "/v1/dossiers/%20D-7.a%20")
    assert dossier.status == 200, dossier.body
    assert dossier.json()["code"] == "D-7.a"
    missing = await hub.portal.request("GET", "/v1/dossiers/a%20b")
    assert_problem(missing, 404, "not_found")
