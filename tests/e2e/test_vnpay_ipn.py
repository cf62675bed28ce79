"""VNPay IPNs at the hub, crafted by hand: each gets its RspCode and changes only what it should."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select

from banks.vnpay import wire
from payhub import keys
from payhub.store.tables import audit_log, events, payments
from tests.factories import VNPAY_SECRET, VNPAY_TMN, Hub, payment_body


def ipn(
    reference: str,
    amount: int,
    *,
    response: str = "00",
    status: str = "00",
    txn: str = "14000001",
    secret: str = VNPAY_SECRET,
    tmn: str = VNPAY_TMN,
) -> dict[str, str]:
    params = {
        "vnp_Amount": str(amount * 100),
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14000001",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan ho so",
        "vnp_PayDate": "20261128100500",
        "vnp_ResponseCode": response,
        "vnp_TmnCode": tmn,
        "vnp_TransactionNo": txn,
        "vnp_TransactionStatus": status,
        "vnp_TxnRef": reference,
    }
    params["vnp_SecureHash"] = wire.sign_query(params, secret)
    return params


async def send(hub: Hub, params: dict[str, str]) -> str:
    async with hub.session.get(f"{hub.base_url}/banks/vnpay/notify", params=params) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    return str(answer["RspCode"])


async def state(hub: Hub, payment_id: str) -> tuple[str, int]:
    status = (await hub.portal.get_payment(payment_id)).json()["status"]
    async with hub.app[keys.ENGINE].connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    return status, int(n)


async def test_ipn_answers_in_vnpay_order_of_checks(hub: Hub) -> None:
    payment = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    ref, amount = payment["bank_reference"], payment["amount"]

    tampered = ipn(ref, amount)
    tampered["vnp_Amount"] = str((amount + 1000) * 100)
    assert await send(hub, tampered) == "97"
    assert await send(hub, ipn(ref, amount, secret="WRONG" * 7)) == "97"
    missing_hash = ipn(ref, amount)
    del missing_hash["vnp_SecureHash"]
    assert await send(hub, missing_hash) == "97"
    assert await send(hub, ipn("PHUNKNOWN000", amount)) == "01"
    assert await send(hub, ipn(ref, amount + 1)) == "04"
    assert await state(hub, payment["id"]) == ("pending", 0)

    assert await send(hub, ipn(ref, amount)) == "00"
    assert await state(hub, payment["id"]) == ("succeeded", 1)
    assert await send(hub, ipn(ref, amount)) == "02"
    assert await send(hub, ipn(ref, amount, response="24", status="02")) == "02"
    assert await state(hub, payment["id"]) == ("succeeded", 1)
    async with hub.app[keys.ENGINE].connect() as conn:
        rejected = (
            await conn.execute(
                select(func.count()).where(audit_log.c.action == "transition.rejected")
            )
        ).scalar_one()
    assert rejected == 1


async def test_failed_ipn_then_concurrent_duplicates(hub: Hub) -> None:
    payment = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    ref, amount = payment["bank_reference"], payment["amount"]
    assert await send(hub, ipn(ref, amount, response="01", status="01")) == "02"  # not final yet
    assert (await state(hub, payment["id"]))[0] == "pending"
    answers = await asyncio.gather(
        *(send(hub, ipn(ref, amount, response="51", status="02")) for _ in range(8))
    )
    assert sorted(answers) == ["00"] + ["02"] * 7
    failed = (await hub.portal.get_payment(payment["id"])).json()
    assert failed["status"] == "failed" and failed["failure_code"] == "51"
    assert (await state(hub, payment["id"]))[1] == 1


async def test_unknown_bank_and_garbage_get_clear_answers(hub: Hub) -> None:
    async with hub.session.get(f"{hub.base_url}/banks/nobank/notify") as response:
        assert response.status == 404
    async with hub.session.get(f"{hub.base_url}/banks/vnpay/notify", params={"x": "1"}) as response:
        assert response.status == 200
        assert (await response.json())["RspCode"] in ("97", "99")


async def test_a_hub_that_cannot_commit_answers_99_so_the_bank_retries(hub: Hub) -> None:
    payment = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.app[keys.LEDGER].close()  # the hub can no longer make anything durable
    assert await send(hub, ipn(payment["bank_reference"], payment["amount"])) == "99"
    async with hub.app[keys.ENGINE].connect() as conn:
        status = (
            await conn.execute(select(payments.c.status).where(payments.c.id == payment["id"]))
        ).scalar_one()
    assert status == "pending"
