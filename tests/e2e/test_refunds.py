"""Refunds through the hub and the VNPay simulator: never more than was paid, once per key."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select

from payhub import keys
from payhub.store.tables import events
from tests.e2e.test_payment_flow import wait_for_status
from tests.e2e.test_portal_api import assert_problem
from tests.factories import Hub, payment_body


async def paid_payment(hub: Hub) -> dict[str, Any]:
    payment = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(payment["payment_url"], "success")
    return await wait_for_status(hub, payment["id"], "succeeded")


async def event_types(hub: Hub) -> list[str]:
    async with hub.app[keys.ENGINE].connect() as conn:
        return list((await conn.execute(select(events.c.type).order_by(events.c.seq))).scalars())


async def test_partial_refunds_up_to_the_amount(hub: Hub) -> None:
    payment = await paid_payment(hub)
    first = await hub.portal.create_refund(payment["id"], {"amount": 150000, "reason": "Phí"}, "r1")
    assert first.status == 201, first.body
    refund = first.json()
    assert refund["id"].startswith("rfd_")
    assert refund["status"] == "succeeded" and refund["amount"] == 150000
    assert refund["payment_id"] == payment["id"]

    replay = await hub.portal.create_refund(
        payment["id"], {"amount": 150000, "reason": "Phí"}, "r1"
    )
    assert replay.status == 200 and replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json() == refund
    changed = await hub.portal.create_refund(payment["id"], {"amount": 1000}, "r1")
    assert_problem(changed, 409, "idempotency_conflict")

    too_much = await hub.portal.create_refund(payment["id"], {"amount": 2400001}, "r2")
    problem = assert_problem(too_much, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "amount"
    rest = await hub.portal.create_refund(payment["id"], {"amount": 2400000}, "r3")
    assert rest.status == 201 and rest.json()["status"] == "succeeded"

    after = (await hub.portal.get_payment(payment["id"])).json()
    assert after["status"] == "succeeded" and after["refunded_amount"] == after["amount"]
    assert (await event_types(hub)).count("refund.succeeded") == 2
    assert_problem(
        await hub.portal.create_refund(payment["id"], {"amount": 1}, "r4"), 422, "validation_failed"
    )


async def test_concurrent_refunds_never_exceed_the_payment(hub: Hub) -> None:
    payment = await paid_payment(hub)
    answers = await asyncio.gather(
        *(hub.portal.create_refund(payment["id"], {"amount": 1000000}, f"c{i}") for i in range(5))
    )
    assert sorted(a.status for a in answers) == [201, 201, 422, 422, 422]
    after = (await hub.portal.get_payment(payment["id"])).json()
    assert after["refunded_amount"] == 2000000


async def test_refunds_need_a_paid_payment_of_ones_own(hub: Hub) -> None:
    pending = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    assert_problem(
        await hub.portal.create_refund(pending["id"], {"amount": 1}, "p1"), 409, "invalid_state"
    )
    paid = await paid_payment(hub)
    assert_problem(
        await hub.other_portal.create_refund(paid["id"], {"amount": 1}, "o1"), 404, "not_found"
    )
    assert_problem(
        await hub.portal.create_refund(paid["id"], {"amount": 0}, "z1"), 422, "validation_failed"
    )
    no_key = await hub.portal.request(
        "POST", f"/v1/payments/{paid['id']}/refunds", json={"amount": 1}
    )
    assert_problem(no_key, 400, "idempotency_key_required")
    assert (await hub.portal.get_payment(paid["id"])).json()["refunded_amount"] == 0


async def test_unanswered_refund_stays_pending_and_keeps_its_amount(hub: Hub) -> None:
    payment = await paid_payment(hub)
    await hub.sim_faults(error_rate=1)
    unanswered = await hub.portal.create_refund(payment["id"], {"amount": 2550000}, "u1")
    assert unanswered.status == 201 and unanswered.json()["status"] == "pending"
    await hub.sim_faults()
    again = await hub.portal.create_refund(payment["id"], {"amount": 1}, "u2")
    assert_problem(again, 422, "validation_failed")
    assert (await hub.portal.get_payment(payment["id"])).json()["refunded_amount"] == 0
    assert "refund.succeeded" not in await event_types(hub)
