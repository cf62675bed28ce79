"""The portal API over HTTP: every bad input gets its documented answer and changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub import keys
from payhub.portal.client import PortalResponse, encode_json, sign_headers
from payhub.store.tables import audit_log, idempotency_keys, payments
from tests.factories import Hub, World, payment_body, running_hub

PROBLEM = "application/problem+json"


async def stored_counts(hub: Hub) -> tuple[int, int, int]:
    async with hub.app[keys.ENGINE].connect() as conn:
        counts = []
        for table in (payments, idempotency_keys, audit_log):
            counts.append(
                int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            )
    return counts[0], counts[1], counts[2]


async def raw_post(hub: Hub, path: str, body: bytes, headers: dict[str, str]) -> PortalResponse:
    async with hub.session.post(hub.base_url + path, data=body, headers=headers) as response:
        return PortalResponse(response.status, response.headers, await response.read())


def signed(
    hub: Hub,
    body: bytes,
    *,
    content_type: str = "application/json",
    key: str | None = "k-1",
    path: str = "/v1/payments",
    **kwargs: Any,
) -> dict[str, str]:
    return sign_headers(
        "POST",
        hub.base_url + path,
        keyid="demo",
        key=hub.world.portal_key,
        created=kwargs.pop("created", datetime.now(UTC)),
        body=body,
        content_type=content_type,
        idempotency_key=key,
        **kwargs,
    )


def assert_problem(response: PortalResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.headers["Content-Type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["code"] == code
    assert problem["type"] == f"urn:payhub:problem:{code}"
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


BAD_BODIES = [
    pytest.param(b"{not json", 400, "malformed_request", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, "malformed_request", id="not-an-object"),
    pytest.param(b'"text"', 400, "malformed_request", id="a-string"),
    pytest.param(b"\xff\xfe", 400, "malformed_request", id="not-utf8"),
    pytest.param(b'{"amount": NaN}', 400, "malformed_request", id="nan"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
async def test_unreadable_bodies(hub: Hub, body: bytes, status: int, code: str) -> None:
    before = await stored_counts(hub)
    assert_problem(await raw_post(hub, "/v1/payments", body, signed(hub, body)), status, code)
    assert await stored_counts(hub) == before


def _items(*amounts: Any) -> list[dict[str, Any]]:
    return [
        {"kind": "fee", "code": f"F{i}", "description": "Phí", "amount": a}
        for i, a in enumerate(amounts)
    ]


INVALID = [
    pytest.param({"amount": "2550000"}, "amount", id="amount-as-string"),
    pytest.param({"amount": 2550000.0}, "amount", id="amount-as-float"),
    pytest.param({"amount": True}, "amount", id="amount-as-bool"),
    pytest.param({"amount": 2550001}, "amount", id="amount-not-the-sum"),
    pytest.param({"items": _items(-5), "amount": -5}, "items[0].amount", id="negative"),
    pytest.param({"items": _items(0), "amount": 0}, "items[0].amount", id="zero"),
    pytest.param({"items": _items(10**12), "amount": 10**12}, "amount", id="huge"),
    pytest.param({"items": _items(1.5), "amount": 1.5}, "items[0].amount", id="float-item"),
    pytest.param({"currency": "USD"}, "currency", id="not-vnd"),
    pytest.param({"surprise": 1}, "surprise", id="unknown-field"),
    pytest.param(
        {"dossier": {"code": "H29", "agency_code": "X", "extra": 1}},
        "dossier.extra",
        id="unknown-nested",
    ),
    pytest.param(
        {"dossier": {"code": "a/b", "agency_code": "X"}}, "dossier.code", id="dossier-code-chars"
    ),
    pytest.param({"payer": {}}, "payer.name", id="missing-payer-name"),
    pytest.param({"items": []}, "items", id="no-items"),
    pytest.param({"bank": "nobank"}, "bank", id="unknown-bank"),
    pytest.param({"return_url": "http://portal.example/x"}, "return_url", id="http-return-url"),
    pytest.param({"expires_in": 299}, "expires_in", id="expires-too-soon"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
async def test_invalid_requests_are_422_with_the_field(
    hub: Hub, change: dict[str, Any], field: str
) -> None:
    before = await stored_counts(hub)
    response = await hub.portal.create_payment(payment_body(**change), str(uuid.uuid4()))
    problem = assert_problem(response, 422, "validation_failed")
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await stored_counts(hub) == before


async def test_missing_field_is_422(hub: Hub) -> None:
    body = payment_body()
    del body["return_url"]
    problem = assert_problem(await hub.portal.create_payment(body, "k"), 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["return_url"]


async def test_oversize_wrong_type_and_missing_key(hub: Hub) -> None:
    before = await stored_counts(hub)
    big = encode_json(payment_body(description="x" * (65 * 1024)))
    assert_problem(
        await raw_post(hub, "/v1/payments", big, signed(hub, big)), 413, "payload_too_large"
    )
    form = b"amount=1"
    headers = signed(hub, form, content_type="application/x-www-form-urlencoded")
    assert_problem(
        await raw_post(hub, "/v1/payments", form, headers), 415, "unsupported_media_type"
    )
    body = encode_json(payment_body())
    assert_problem(
        await raw_post(hub, "/v1/payments", body, signed(hub, body, key=None)),
        400,
        "idempotency_key_required",
    )
    assert await stored_counts(hub) == before


@pytest.mark.parametrize(
    "key", ["k" * 256, "has space", "", " "], ids=["too-long", "space", "empty", "blank"]
)
async def test_unusable_idempotency_key_is_idempotency_key_required(hub: Hub, key: str) -> None:
    """CONTRACT §2: a key that is not 1–255 visible ASCII characters is no key at all."""
    before = await stored_counts(hub)
    body = encode_json(payment_body())
    response = await raw_post(hub, "/v1/payments", body, signed(hub, body, key=key))
    problem = assert_problem(response, 400, "idempotency_key_required")
    assert "Idempotency-Key" in problem["detail"]
    assert await stored_counts(hub) == before


async def test_body_without_content_digest_is_digest_mismatch(hub: Hub) -> None:
    """CONTRACT §2: a body with no Content-Digest is 400 digest_mismatch, not 401."""
    before = await stored_counts(hub)
    body = encode_json(payment_body())
    headers = signed(
        hub, body, covered_components=["@method", "@path", "content-type", "idempotency-key"]
    )
    del headers["Content-Digest"]
    assert_problem(await raw_post(hub, "/v1/payments", body, headers), 400, "digest_mismatch")
    assert await stored_counts(hub) == before


async def test_signature_failures(hub: Hub) -> None:
    before = await stored_counts(hub)
    body = encode_json(payment_body())
    unsigned = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    assert_problem(await raw_post(hub, "/v1/payments", body, unsigned), 401, "signature_missing")

    old = signed(hub, body, created=datetime.now(UTC) - timedelta(seconds=301))
    assert_problem(await raw_post(hub, "/v1/payments", body, old), 401, "signature_expired")

    tampered_body = body.replace(b"2550000", b"2550001")
    assert_problem(
        await raw_post(hub, "/v1/payments", tampered_body, signed(hub, body)),
        400,
        "digest_mismatch",
    )

    headers = signed(hub, body)
    sig = headers["Signature"]
    headers["Signature"] = sig[:12] + ("A" if sig[12] != "A" else "B") + sig[13:]
    assert_problem(await raw_post(hub, "/v1/payments", body, headers), 401, "signature_invalid")

    other_key = sign_headers(
        "POST",
        hub.base_url + "/v1/payments",
        keyid="demo",
        key=hub.world.other_portal_secret,
        created=datetime.now(UTC),
        body=body,
        content_type="application/json",
        idempotency_key="k",
    )
    assert_problem(await raw_post(hub, "/v1/payments", body, other_key), 401, "signature_invalid")
    assert await stored_counts(hub) == before

    once = signed(hub, body)
    first = await raw_post(hub, "/v1/payments", body, once)
    assert first.status == 201
    assert_problem(await raw_post(hub, "/v1/payments", body, once), 401, "signature_replayed")
    assert (await stored_counts(hub))[0] == before[0] + 1


async def test_principals_only_reach_their_own_things(hub: Hub) -> None:
    created = await hub.portal.create_payment(payment_body(), "mine")
    payment = created.json()
    foreign = await hub.other_portal.get_payment(payment["id"])
    assert_problem(foreign, 404, "not_found")
    assert_problem(await hub.other_portal.cancel_payment(payment["id"]), 404, "not_found")
    listed = await hub.other_portal.list_payments("H29.17-261127-0001")
    assert listed.status == 200 and listed.json() == {"data": []}
    assert_problem(await hub.other_portal.get_dossier("H29.17-261127-0001"), 404, "not_found")
    assert_problem(await hub.finance.get_payment(payment["id"]), 403, "forbidden")
    assert_problem(
        await hub.portal.request("GET", "/v1/finance/reconciliations/rec_x"), 403, "forbidden"
    )
    assert (await hub.portal.get_payment(payment["id"])).json()["status"] == "pending"


async def test_idempotent_create_replays_and_conflicts(hub: Hub) -> None:
    first = await hub.portal.create_payment(payment_body(), "same")
    assert first.status == 201 and "Idempotency-Replayed" not in first.headers
    replay = await hub.portal.create_payment(payment_body(), "same")
    assert replay.status == 200
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json() == first.json()
    changed = await hub.portal.create_payment(payment_body(description="changed"), "same")
    assert_problem(changed, 409, "idempotency_conflict")
    assert (await stored_counts(hub))[0] == 1


async def test_nfc_normalisation_of_vietnamese_text(hub: Hub) -> None:
    decomposed = "Nguye\u0302\u0303n Va\u0306n An"
    body = payment_body(payer={"name": decomposed})
    body["items"][0]["description"] = "Le\u0302\u0323 phi\u0301"
    created = (await hub.portal.create_payment(body, "nfc")).json()
    assert created["items"][0]["description"] == "Lệ phí"


async def test_read_list_dossier_and_cancel(hub: Hub) -> None:
    a = (await hub.portal.create_payment(payment_body("D-1"), "a")).json()
    b = (await hub.portal.create_payment(payment_body("D-1"), "b")).json()
    listed = (await hub.portal.list_payments("D-1")).json()["data"]
    assert [p["id"] for p in listed] == [a["id"], b["id"]]
    assert (await hub.portal.get_payment(a["id"])).json() == a
    dossier = (await hub.portal.get_dossier("D-1")).json()
    assert dossier["status"] == "pending" and dossier["paid_amount"] == 0
    cancelled = await hub.portal.cancel_payment(a["id"])
    assert cancelled.status == 200 and cancelled.json()["status"] == "cancelled"
    assert_problem(await hub.portal.cancel_payment(a["id"]), 409, "invalid_state")
    assert_problem(await hub.portal.get_payment("pay_nothing"), 404, "not_found")
    events = (await hub.portal.list_events()).json()
    assert [e["type"] for e in events["data"]] == ["payment.cancelled"]
    assert events["has_more"] is False


async def test_event_pull_pages_in_order(hub: Hub) -> None:
    ids = []
    for i in range(3):
        payment = (await hub.portal.create_payment(payment_body(f"E-{i}"), f"e{i}")).json()
        await hub.portal.cancel_payment(payment["id"])
        ids.append(payment["id"])
    first = (await hub.portal.list_events(limit=2)).json()
    assert first["has_more"] is True
    rest = (await hub.portal.list_events(after=first["data"][-1]["id"], limit=2)).json()
    assert rest["has_more"] is False
    assert [e["data"]["id"] for e in first["data"] + rest["data"]] == ids
    assert_problem(await hub.portal.list_events(limit=501), 422, "validation_failed")
    assert_problem(
        await hub.other_portal.list_events(after=first["data"][0]["id"]), 422, "validation_failed"
    )


async def test_operations_endpoints_need_no_signature(hub: Hub) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/.well-known/jwks.json"):
        async with hub.session.get(hub.base_url + path) as response:
            assert response.status == 200, path
            text = await response.text()
            assert "hash_secret" not in text and "PRIVATE" not in text
    async with hub.session.get(hub.base_url + "/.well-known/jwks.json") as response:
        jwks = await response.json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"
    async with hub.session.get(hub.base_url + "/nowhere") as response:
        assert response.status == 404
        assert response.headers["Content-Type"].startswith(PROBLEM)
        assert json.loads(await response.text())["code"] == "not_found"


async def test_rate_limit_answers_429_with_retry_after(world: World) -> None:
    limited = dataclasses.replace(
        world, settings=dataclasses.replace(world.settings, rate_limit_per_second=1)
    )
    async with running_hub(limited) as hub:
        answers = [await hub.portal.list_payments("D-1") for _ in range(3)]
        assert [a.status for a in answers[:2]] == [200, 200]
        problem = assert_problem(answers[2], 429, "rate_limited")
        assert answers[2].headers["Retry-After"] == "1"
        assert "per second" in problem["detail"]
        other = await hub.other_portal.list_payments("D-1")
        assert other.status == 200


async def test_concurrent_duplicates_over_http_create_one_payment(hub: Hub) -> None:
    answers = await asyncio.gather(
        *(hub.portal.create_payment(payment_body(), "dup") for _ in range(12))
    )
    statuses = sorted(a.status for a in answers)
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
    for answer in answers:
        if answer.status == 409:
            assert answer.json()["code"] == "idempotency_in_flight"
        if answer.status == 200:
            assert answer.headers["Idempotency-Replayed"] == "true"
    ids = {a.json()["id"] for a in answers if a.status in (200, 201)}
    assert len(ids) == 1
    assert (await stored_counts(hub))[0] == 1


async def test_wrong_method_is_a_405_problem_with_allow(hub: Hub) -> None:
    async with hub.session.delete(f"{hub.base_url}/healthz") as response:
        assert response.status == 405
        assert response.headers["Content-Type"].startswith(PROBLEM)
        assert "GET" in response.headers["Allow"]
        assert (await response.json())["code"] == "method_not_allowed"


async def test_a_hub_shutting_down_answers_503_not_500(hub: Hub) -> None:
    await hub.app[keys.LEDGER].close()
    answer = await hub.portal.create_payment(payment_body(), "late")
    problem = assert_problem(answer, 503, "not_ready")
    assert answer.headers["Retry-After"] == "1"
    assert "retry" in problem["detail"]
