"""Routing through a real hub: failover between banks whose simulators fail on command.

The hub has three banks: two MoMo merchant accounts (``momo``, ``momo2``, each with its
own simulator, both placing orders over HTTP) and VNPay, which the routing section
keeps for payments of 30,000,000 VND or more. VNPay signs its payment URL locally and
so is never "down" when an order is placed; the two MoMo accounts are what can fail. A
simulator fails on command with ``error_rate: 1``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select
from structlog.testing import capture_logs

from payhub import keys
from payhub.settings import parse_settings
from payhub.store.tables import idempotency_keys, payments
from tests.e2e.test_momo_hub import MOMO
from tests.e2e.test_payment_flow import wait_for_status
from tests.factories import Hub, free_port, payment_body, running_hub, settings_document


@pytest.fixture(name="hub")
async def _routed_hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    port = free_port()
    doc, world = settings_document(tmp_path, database_url, port)
    base = f"http://127.0.0.1:{port}/sim"
    doc["banks"]["momo"] = MOMO | {"base_url": f"{base}/momo"}
    doc["banks"]["momo2"] = MOMO | {"partner_code": "MOMOPAYHUB02", "base_url": f"{base}/momo2"}
    del doc["hub"]["default_bank"]
    doc["routing"] = {
        "order": ["momo", "momo2", "vnpay"],
        "breaker": {"failure_threshold": 2},
        "banks": {"vnpay": {"min_amount": 30_000_000}},
    }
    world = replace(world, settings=parse_settings(doc, tmp_path / "payhub.toml"))
    async with running_hub(world) as hub:
        yield hub


@pytest.fixture(name="logs")
def _logs() -> Iterator[list[dict[str, Any]]]:
    """The test's log lines, at info level whatever another test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    with capture_logs() as logs:
        yield logs
    structlog.configure(wrapper_class=saved["wrapper_class"])


def last_decision(logs: list[dict[str, Any]]) -> dict[str, Any]:
    return [e for e in logs if e["event"] == "routing_decision"][-1]


async def faults(hub: Hub, bank: str, **knobs: Any) -> None:
    async with hub.session.put(f"{hub.base_url}/sim/{bank}/_sim/faults", json=knobs) as response:
        assert response.status == 200, await response.text()


def unrouted(amount: int = 2_550_000) -> dict[str, Any]:
    """CONTRACT §3's request without a bank, so the hub routes it."""
    body = payment_body(f"H29.17-{uuid.uuid4().hex[:12]}")
    del body["bank"]
    body["items"][0]["amount"] = amount - body["items"][1]["amount"]
    body["amount"] = amount
    return body


async def rows(hub: Hub, table: Any, **where: Any) -> int:
    async with hub.app[keys.ENGINE].connect() as conn:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int((await conn.execute(query)).scalar_one())


async def test_a_failing_bank_sends_the_payment_to_the_next(hub: Hub) -> None:
    await faults(hub, "momo", error_rate=1)

    created = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))

    assert created.status == 201, created.body
    payment = created.json()
    assert payment["bank"] == "momo2"
    assert payment["payment_url"].startswith(f"{hub.base_url}/sim/momo2/")
    async with hub.session.post(
        f"{hub.base_url}/sim/momo2/_sim/pay",
        json={"reference": payment["bank_reference"], "outcome": "success"},
    ) as response:
        assert response.status == 200, await response.text()
    await wait_for_status(hub, payment["id"], "succeeded")


async def test_a_healthy_first_bank_takes_the_payment(hub: Hub, logs: list[dict[str, Any]]) -> None:
    created = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))

    assert created.status == 201, created.body
    assert created.json()["bank"] == "momo"
    assert last_decision(logs)["candidates"] == ["momo", "momo2"]
    assert last_decision(logs)["excluded"] == {"vnpay": "limit"}


async def test_every_bank_down_is_503_and_nothing_stays_pending(hub: Hub) -> None:
    await faults(hub, "momo", error_rate=1)
    await faults(hub, "momo2", error_rate=1)
    body, key = unrouted(), str(uuid.uuid4())

    refused = await hub.portal.create_payment(body, key)

    assert refused.status == 503, refused.body
    assert refused.json()["code"] == "bank_unavailable"
    assert refused.headers["Retry-After"]
    assert await rows(hub, payments, dossier_code=body["dossier"]["code"]) == 0
    assert await rows(hub, idempotency_keys, key=key) == 0
    assert (await hub.portal.get_dossier(body["dossier"]["code"])).status == 404

    await faults(hub, "momo2", error_rate=0)
    retried = await hub.portal.create_payment(body, key)  # the same key, once a bank is back
    assert retried.status == 201, retried.body
    assert retried.json()["bank"] == "momo2"


async def test_an_open_breaker_keeps_a_failing_bank_out_until_its_cool_down(
    hub: Hub, logs: list[dict[str, Any]]
) -> None:
    await faults(hub, "momo", error_rate=1)
    for _ in range(2):  # failure_threshold = 2
        created = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))
        assert created.json()["bank"] == "momo2"
    await faults(hub, "momo", error_rate=0)  # momo is back, but the hub does not know yet

    created = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))

    assert created.json()["bank"] == "momo2"
    assert last_decision(logs)["excluded"] == {"momo": "breaker_open", "vnpay": "limit"}
    assert last_decision(logs)["candidates"] == ["momo2"]


async def test_an_amount_over_momos_limit_is_never_sent_to_momo(
    hub: Hub, logs: list[dict[str, Any]]
) -> None:
    created = await hub.portal.create_payment(unrouted(50_000_001), str(uuid.uuid4()))

    assert created.status == 201, created.body
    assert created.json()["bank"] == "vnpay"
    assert last_decision(logs)["excluded"] == {"momo": "limit", "momo2": "limit"}
    assert last_decision(logs)["candidates"] == ["vnpay"]

    both = await hub.portal.create_payment(unrouted(50_000_000), str(uuid.uuid4()))
    assert both.json()["bank"] == "momo"
    assert last_decision(logs)["candidates"] == ["momo", "momo2", "vnpay"]


async def test_the_portals_bank_is_never_swapped_even_when_down(hub: Hub) -> None:
    await faults(hub, "momo", error_rate=1)
    body = unrouted()
    body["bank"] = "momo"

    refused = await hub.portal.create_payment(body, str(uuid.uuid4()))

    assert refused.status == 503, refused.body
    assert await rows(hub, payments, dossier_code=body["dossier"]["code"]) == 0


async def test_with_every_breaker_open_the_answer_is_503_at_once(
    hub: Hub, logs: list[dict[str, Any]]
) -> None:
    await faults(hub, "momo", error_rate=1)
    await faults(hub, "momo2", error_rate=1)
    for _ in range(2):  # failure_threshold = 2: both breakers open
        refused = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))
        assert refused.status == 503, refused.body
    await faults(hub, "momo", error_rate=0)
    await faults(hub, "momo2", error_rate=0)  # back, but the hub waits out the cool-down
    warnings = [e for e in logs if e["event"] == "bank_unavailable"]
    assert [e["bank"] for e in warnings] == ["momo", "momo2"] * 2

    refused = await hub.portal.create_payment(unrouted(), str(uuid.uuid4()))

    assert refused.status == 503, refused.body
    assert refused.json()["code"] == "bank_unavailable"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30  # open_seconds: 30 by default
    assert last_decision(logs)["candidates"] == []
    assert last_decision(logs)["excluded"] == {
        "momo": "breaker_open",
        "momo2": "breaker_open",
        "vnpay": "limit",
    }
    assert [e for e in logs if e["event"] == "bank_unavailable"] == warnings  # no bank called
