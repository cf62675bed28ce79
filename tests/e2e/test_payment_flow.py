"""The first complete path: create → pay at the VNPay simulator → IPN → succeeded, once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select

from payhub import keys
from payhub.store.audit import verify_chain
from payhub.store.tables import events
from tests.factories import Hub, payment_body


async def wait_for_status(hub: Hub, payment_id: str, wanted: str) -> dict[str, Any]:
    """Confirmations are applied before the bank is answered, so this rarely loops."""
    for _ in range(100):
        response = await hub.portal.get_payment(payment_id)
        payment = response.json()
        if payment["status"] == wanted:
            return payment
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment {payment_id} stayed {payment['status']}, wanted {wanted}")


async def count_events(hub: Hub, payment_id: str, type_: str) -> int:
    async with hub.app[keys.ENGINE].connect() as conn:
        query = select(func.count()).where(
            events.c.payment_id == payment_id, events.c.type == type_
        )
        return int((await conn.execute(query)).scalar_one())


async def test_payment_is_created_paid_and_confirmed_once(hub: Hub) -> None:
    created = await hub.portal.create_payment(payment_body(), idempotency_key=str(uuid.uuid4()))
    assert created.status == 201, created.body
    payment = created.json()
    assert payment["status"] == "pending"
    assert payment["amount"] == 2550000
    assert payment["payment_url"].startswith(f"{hub.base_url}/sim/vnpay/paymentv2/vpcpay.html?")
    assert "vnp_Amount=255000000" in payment["payment_url"]
    assert payment["created_at"].endswith("+07:00")
    assert "payer" not in payment

    played = await hub.sim_pay(payment["payment_url"], "success")
    assert played

    paid = await wait_for_status(hub, payment["id"], "succeeded")
    assert paid["paid_at"] is not None
    assert await count_events(hub, payment["id"], "payment.succeeded") == 1

    pulled = (await hub.portal.list_events()).json()
    assert [e["type"] for e in pulled["data"]] == ["payment.succeeded"]
    assert pulled["data"][0]["data"]["id"] == payment["id"]
    report = await verify_chain(hub.app[keys.ENGINE])
    assert report.ok and report.entries == 2


async def test_duplicated_confirmations_apply_once(hub: Hub) -> None:
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_faults(duplicate_confirmation=3, concurrent_duplicates=True)
    await hub.sim_pay(created["payment_url"], "success")
    await wait_for_status(hub, created["id"], "succeeded")
    assert await count_events(hub, created["id"], "payment.succeeded") == 1


async def test_declined_payment_fails_and_late_success_is_ignored(hub: Hub) -> None:
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(created["payment_url"], "insufficient_funds")
    failed = await wait_for_status(hub, created["id"], "failed")
    assert failed["failure_code"] == "51"
    assert await count_events(hub, created["id"], "payment.failed") == 1
