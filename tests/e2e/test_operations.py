"""Operations over HTTP: health, readiness, metrics, and what a payment flow leaves in logs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import text
from structlog.testing import capture_logs

from payhub import keys
from payhub.observability.logging import log_processors
from payhub.store import migrate
from payhub.store.engine import create_engine, writing_connection
from tests.factories import CONTRACT_EXAMPLE, VNPAY_SECRET, Hub, World, payment_body

ID_NUMBER = CONTRACT_EXAMPLE["payer"]["id_number"]
PHONE = CONTRACT_EXAMPLE["payer"]["phone"]
OPS_PATHS = ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/.well-known/jwks.json")


@pytest.fixture(name="info_logs")
def _info_logs() -> Iterator[None]:
    """Info level whatever another test configured (the CLI's demo sets ERROR)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(wrapper_class=saved["wrapper_class"])


async def get(hub: Hub, path: str, **headers: str) -> tuple[int, str, str, Any]:
    """Unsigned GET: status, content type, body text, response headers."""
    async with hub.session.get(f"{hub.base_url}{path}", headers=headers) as response:
        return response.status, response.content_type, await response.text(), response.headers


async def wait_for_status(hub: Hub, payment_id: str, wanted: str) -> dict[str, Any]:
    for _ in range(200):
        payment: dict[str, Any] = (await hub.portal.get_payment(payment_id)).json()
        if payment["status"] == wanted:
            return payment
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment {payment_id} stayed {payment['status']}, wanted {wanted}")


async def test_healthz_answers_json(hub: Hub) -> None:
    status, content_type, body, _ = await get(hub, "/healthz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ok"}


async def test_readyz_is_ready_on_a_migrated_database(hub: Hub) -> None:
    status, content_type, body, _ = await get(hub, "/readyz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ready"}


async def test_readyz_is_not_ready_when_the_schema_falls_behind(hub: Hub) -> None:
    engine = hub.app[keys.ENGINE]
    async with engine.connect() as conn:
        head = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    async with writing_connection(engine) as conn, conn.begin():
        await conn.execute(text("UPDATE alembic_version SET version_num = 'behind'"))
    try:
        status, content_type, body, _ = await get(hub, "/readyz")
    finally:  # the PostgreSQL test database is shared by the whole session
        async with writing_connection(engine) as conn, conn.begin():
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert (status, content_type) == (503, "application/problem+json")
    problem = json.loads(body)
    assert problem["code"] == "not_ready"
    assert problem["status"] == 503
    assert "upgrade" in problem["detail"]
    assert (await get(hub, "/readyz"))[0] == 200


async def test_an_empty_database_is_not_current(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        assert await migrate.current_revision(engine) is None
        assert not await migrate.is_current(engine)
    finally:
        await engine.dispose()


async def test_metrics_count_requests_by_route_and_payments_by_bank(hub: Hub) -> None:
    assert (await get(hub, "/healthz"))[0] == 200
    created = await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))
    assert created.status == 201, created.body
    payment_id = created.json()["id"]
    assert (await hub.portal.get_payment(payment_id)).status == 200
    assert (await get(hub, "/no/such/thing"))[0] == 404

    status, content_type, body, _ = await get(hub, "/metrics")
    assert (status, content_type) == (200, "text/plain")
    lines = body.splitlines()
    assert 'payhub_http_requests_total{route="/healthz",status="200"} 1.0' in lines
    assert 'payhub_http_requests_total{route="/v1/payments",status="201"} 1.0' in lines
    assert 'payhub_http_requests_total{route="/v1/payments/{id}",status="200"} 1.0' in lines
    assert 'payhub_http_requests_total{route="unmatched",status="404"} 1.0' in lines
    assert 'payhub_payments_created_total{bank="vnpay"} 1.0' in lines
    assert any(line.startswith("payhub_http_request_seconds_bucket{") for line in lines)
    batches = [line for line in lines if line.startswith("payhub_ledger_batch_units_count ")]
    assert batches and float(batches[0].split()[1]) >= 1  # the create's group commit
    assert payment_id not in body  # labels are routes, never ids


async def test_operations_routes_need_no_signature_and_reveal_no_secret(hub: Hub) -> None:
    created = await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))
    assert created.status == 201, created.body
    other_secret = hub.world.other_portal_secret
    for path in OPS_PATHS:
        status, _, body, _ = await get(hub, path)
        assert status == 200, (path, body)
        for leaked in (VNPAY_SECRET, "PRIVATE KEY"):
            assert leaked not in body, (path, leaked)
        if path != "/v1/openapi.json":  # its examples are CONTRACT §3's, payer included
            assert ID_NUMBER not in body and PHONE not in body, path
        assert other_secret.hex() not in body
        assert base64.b64encode(other_secret).decode() not in body
    jwks = json.loads((await get(hub, "/.well-known/jwks.json"))[2])
    assert jwks["keys"] and all("d" not in key for key in jwks["keys"])


async def test_request_id_is_echoed_and_logged(hub: Hub, info_logs: None) -> None:
    with capture_logs(processors=log_processors()) as logs:
        status, _, _, headers = await get(hub, "/healthz", **{"X-Request-Id": "ops-check-1"})
        _, _, _, generated = await get(hub, "/healthz", **{"X-Request-Id": "not valid!"})
    assert status == 200
    assert headers["X-Request-Id"] == "ops-check-1"
    assert generated["X-Request-Id"].startswith("req_")
    lines = [e for e in logs if e["event"] == "request"]
    assert [e["request_id"] for e in lines] == ["ops-check-1", generated["X-Request-Id"]]
    first = lines[0]
    assert first["method"] == "GET"
    assert first["path"] == "/healthz"
    assert first["route"] == "/healthz"
    assert first["status"] == 200
    assert first["log_level"] == "info"
    assert isinstance(first["duration_ms"], float)
    assert "portal" not in first and "payment_id" not in first


async def test_a_payment_flow_logs_context_and_no_personal_data_or_secret(
    hub: Hub, info_logs: None
) -> None:
    with capture_logs(processors=log_processors()) as logs:
        created = await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))
        assert created.status == 201, created.body
        payment = created.json()
        await hub.sim_pay(payment["payment_url"], "success")
        await wait_for_status(hub, payment["id"], "succeeded")
        refused = await hub.portal.get_payment("pay_" + "0" * 26)
        assert refused.status == 404
        # A client can put personal data where the hub logs it: the path, the request id.
        stray = await get(hub, f"/payers/{ID_NUMBER}", **{"X-Request-Id": PHONE})
        assert stray[0] == 404 and stray[3]["X-Request-Id"] == PHONE

    requests = [e for e in logs if e["event"] == "request"]
    assert all(e["request_id"] for e in requests)
    assert len({e["request_id"] for e in requests}) == len(requests)

    create = [e for e in requests if e["route"] == "/v1/payments" and e["method"] == "POST"]
    assert len(create) == 1
    assert create[0]["portal"] == "demo"
    assert create[0]["status"] == 201

    reads = [e for e in requests if e["route"] == "/v1/payments/{id}"]
    assert reads
    assert all(e["portal"] == "demo" for e in reads)
    assert {e["payment_id"] for e in reads} == {payment["id"], "pay_" + "0" * 26}
    assert {e["status"] for e in reads} >= {200, 404}

    notify = [e for e in requests if e["route"] == "/banks/{bank}/notify"]
    assert notify and all(e["bank"] == "vnpay" and "portal" not in e for e in notify)
    assert all("?" not in e["path"] for e in requests)

    (stray_line,) = [e for e in requests if e["route"] == "unmatched"]
    assert stray_line["path"] == "/payers/*********234"
    assert stray_line["request_id"] == "*******678"

    everything = json.dumps(logs, default=str)
    assert payment["id"] in everything
    for leaked in (ID_NUMBER, PHONE, VNPAY_SECRET, "vnp_SecureHash="):
        assert leaked not in everything, leaked


async def test_contexts_of_concurrent_requests_do_not_mix(hub: Hub, info_logs: None) -> None:
    created = [
        (await hub.portal.create_payment(payment_body(f"H29.17-OPS-{n}"), str(uuid.uuid4()))).json()
        for n in range(3)
    ]
    ids = [p["id"] for p in created]
    with capture_logs(processors=log_processors()) as logs:
        answers = await asyncio.gather(*(hub.portal.get_payment(i) for i in ids * 3))
        await get(hub, "/healthz")
    assert all(a.status == 200 for a in answers)
    reads = [e for e in logs if e["event"] == "request" and e["route"] == "/v1/payments/{id}"]
    assert sorted(e["payment_id"] for e in reads) == sorted(ids * 3)
    assert all(e["path"] == f"/v1/payments/{e['payment_id']}" for e in reads)
    health = [e for e in logs if e["event"] == "request" and e["route"] == "/healthz"]
    assert len(health) == 1 and "payment_id" not in health[0] and "portal" not in health[0]


def test_configured_secrets_are_redacted_in_any_log_text(world: World) -> None:
    """create_app registers every configured secret: even a careless message cannot leak one."""
    from payhub.app import create_app
    from payhub.observability.logging import protect
    from payhub.settings import BankSettings

    # No pattern would take this for a secret; random words keep each run's text unseen.
    words = ["lotus", "river", "blossoms", "rice", "field", "lantern", "harbour", "mountain"]
    innocent = " ".join(random.sample(words, 5)) + f" {random.randrange(10**6)}"
    bank = world.settings.banks["vnpay"]
    options = {**bank.options, "hash_secret": innocent}
    settings = dataclasses.replace(
        world.settings,
        banks={"vnpay": BankSettings(name="vnpay", connector="vnpay", options=options)},
    )
    before = protect(None, "info", {"event": f"calling the bank with {innocent}"})
    assert innocent in json.dumps(before)
    create_app(settings)
    after = protect(None, "info", {"event": f"calling the bank with {innocent}"})
    assert innocent not in json.dumps(after)
