"""MoMo end to end: the hub and the MoMo simulator talking over real HTTP.

The portal creates a payment on the ``momo`` bank (a real captureWallet create at the
simulator), a payer plays out at the simulator, and its IPN reaches the hub, which
answers 204 once the effect is committed. Faults come from the simulator's knobs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub import keys
from payhub.settings import parse_settings
from payhub.store.tables import events
from tests.e2e.test_payment_flow import wait_for_status
from tests.factories import Hub, free_port, payment_body, running_hub, settings_document

MOMO = {
    "connector": "momo",
    "partner_code": "MOMOPAYHUB01",
    "access_key": "PAYHUBACCESSKEY1",
    "secret_key": "PAYHUBMOMOSECRET0123456789abcdef",
}


@pytest.fixture(name="hub")
async def _momo_hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    port = free_port()
    doc, world = settings_document(tmp_path, database_url, port)
    doc["banks"]["momo"] = MOMO | {"base_url": f"http://127.0.0.1:{port}/sim/momo"}
    world = replace(world, settings=parse_settings(doc, tmp_path / "payhub.toml"))
    async with running_hub(world) as hub:
        yield hub


async def momo_payment(hub: Hub) -> dict[str, Any]:
    body = payment_body(bank="momo")
    created = await hub.portal.create_payment(body, str(uuid.uuid4()))
    assert created.status == 201, created.body
    payment: dict[str, Any] = created.json()
    assert payment["payment_url"].startswith(f"{hub.base_url}/sim/momo/v2/gateway/pay?t=")
    return payment


async def sim(hub: Hub, path: str, method: str = "POST", **body: Any) -> Any:
    url = f"{hub.base_url}/sim/momo{path}"
    async with hub.session.request(method, url, json=body or None) as response:
        assert response.status in (200, 202), await response.text()
        return await response.json()


async def pay(hub: Hub, payment: dict[str, Any], outcome: str = "success", **extra: Any) -> Any:
    return await sim(
        hub, "/_sim/pay", reference=payment["bank_reference"], outcome=outcome, **extra
    )


def answers(report: dict[str, Any]) -> list[list[Any]]:
    return [[a.get("http_status") for a in c["answers"]] for c in report["confirmations"]]


async def status_and_events(hub: Hub, payment_id: str) -> tuple[str, int]:
    status = (await hub.portal.get_payment(payment_id)).json()["status"]
    async with hub.app[keys.ENGINE].connect() as conn:
        query = select(func.count()).where(events.c.payment_id == payment_id)
        return status, int((await conn.execute(query)).scalar_one())


async def test_paid_by_bank_reference_and_answered_204(hub: Hub) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment)

    assert answers(report) == [[204]]
    paid = await wait_for_status(hub, payment["id"], "succeeded")
    assert paid["bank"] == "momo"
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_paid_by_payment_url(hub: Hub) -> None:
    payment = await momo_payment(hub)

    report = await sim(hub, "/_sim/pay", reference=payment["payment_url"], outcome="success")

    assert answers(report) == [[204]]
    await wait_for_status(hub, payment["id"], "succeeded")


@pytest.mark.parametrize(
    ("outcome", "code"), [("insufficient_funds", 1001), ("cancel", 1006), ("timeout", 1005)]
)
async def test_payment_failures_are_final(hub: Hub, outcome: str, code: int) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment, outcome)

    assert report["payments"][0]["resultCode"] == code
    assert answers(report) == [[204]]
    failed = await wait_for_status(hub, payment["id"], "failed")
    assert failed["status"] == "failed"


async def test_processing_is_not_final(hub: Hub) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment, "processing")

    assert answers(report) == [[204]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)
    await pay(hub, payment, "success")
    await wait_for_status(hub, payment["id"], "succeeded")


@pytest.mark.parametrize("concurrent", [False, True])
async def test_duplicated_ipns_are_applied_once(hub: Hub, concurrent: bool) -> None:
    payment = await momo_payment(hub)

    report = await pay(
        hub,
        payment,
        faults={"duplicate_confirmation": 3, "concurrent_duplicates": concurrent},
    )

    assert answers(report) == [[204] * 4]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_failure_after_success_is_ignored(hub: Hub) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment, "declined_then_paid", faults={"reorder_confirmations": True})

    assert [c["reference"] for c in report["confirmations"]] == [payment["bank_reference"]] * 2
    codes = [p["resultCode"] for p in report["payments"]]
    assert codes == [1006, 0]
    assert answers(report) == [[204], [204]]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


@pytest.mark.parametrize(
    ("knob", "reported"), [("tamper_amount", "tampered"), ("bad_signature", "bad_signature")]
)
async def test_forged_ipns_are_refused(hub: Hub, knob: str, reported: str) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment, faults={knob: 1, "ipn_retries": 0})

    assert report["confirmations"][0][reported] is True
    assert answers(report) == [[400]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_wrong_amount_is_refused(hub: Hub) -> None:
    payment = await momo_payment(hub)

    report = await pay(hub, payment, amount=payment["amount"] - 1000, faults={"ipn_retries": 0})

    assert answers(report) == [[400]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_refunds_partial_then_full(hub: Hub) -> None:
    payment = await momo_payment(hub)
    await pay(hub, payment)
    await wait_for_status(hub, payment["id"], "succeeded")

    first = await hub.portal.create_refund(
        payment["id"], {"amount": 150_000, "reason": "Phí"}, "m1"
    )
    assert first.status == 201, first.body
    assert first.json()["status"] == "succeeded"
    rest = await hub.portal.create_refund(payment["id"], {"amount": 2_400_000}, "m2")
    assert rest.status == 201, rest.body
    assert rest.json()["status"] == "succeeded"

    after = (await hub.portal.get_payment(payment["id"])).json()
    assert after["refunded_amount"] == after["amount"]


async def test_orders_above_the_wallet_limit_never_reach_momo(hub: Hub) -> None:
    body = payment_body(bank="momo")
    body["items"][0]["amount"] = 50_000_000
    body["amount"] = 50_150_000

    created = await hub.portal.create_payment(body, str(uuid.uuid4()))

    assert created.status == 422
    problem = created.json()
    assert problem["errors"] == [{"field": "bank", "message": "amount outside this bank's limits"}]
    assert "1,000–50,000,000" in problem["detail"]
