"""Recovery end to end: the hub, its recovery worker and the vnpay and momo simulators.

The hub runs on a ``ManualClock`` (the simulators' waits follow it), its background
worker is off (``[recovery] enabled = false``) and each test runs the worker's rounds
itself after moving the clock, so a schedule of minutes plays in milliseconds. Payments
are read through the payment service: the portal's signatures are dated in real time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from banks.simulation import ManualClock
from payhub import keys
from payhub.domain.clock import system_clock
from payhub.recovery.lifecycle import RECOVERY
from payhub.recovery.worker import RecoveryWorker
from payhub.service.recovery import Settled
from payhub.service.refunds import RefundRecovered
from payhub.settings import parse_settings
from payhub.store.tables import audit_log, events
from tests.e2e.test_momo_hub import MOMO
from tests.factories import Hub, free_port, payment_body, running_hub, settings_document

BANKS = ["vnpay", "momo"]


@dataclass
class Scene:
    hub: Hub
    clock: ManualClock
    started: datetime

    @property
    def worker(self) -> RecoveryWorker:
        return self.hub.app[RECOVERY]

    async def create(self, bank: str, **overrides: Any) -> dict[str, Any]:
        body = payment_body(f"R-{uuid.uuid4().hex[:8]}", bank=bank, **overrides)
        created = await self.hub.portal.create_payment(body, str(uuid.uuid4()))
        assert created.status == 201, created.body
        payment: dict[str, Any] = created.json()
        return payment

    async def sim(self, bank: str, path: str, method: str = "POST", **body: Any) -> Any:
        url = f"{self.hub.base_url}/sim/{bank}{path}"
        async with self.hub.session.request(method, url, json=body) as response:
            assert response.status in (200, 202), await response.text()
            return await response.json()

    async def pay_unheard(self, bank: str, payment: dict[str, Any]) -> None:
        """The payer pays; the bank's confirmation is lost (never sent, never resent)."""
        report = await self.sim(
            bank,
            "/_sim/pay",
            reference=payment["payment_url"] or payment["bank_reference"],
            outcome="success",
            faults={"lose_confirmation": 1},
        )
        assert report["payments"], report

    async def status(self, payment_id: str) -> str:
        payment = await self.hub.app[keys.PAYMENTS].get("demo", payment_id)
        return payment.status.value

    async def at(self, seconds: float) -> int:
        """Move to ``seconds`` after the start and run the worker until nothing is due."""
        self.clock.advance(
            (self.started + timedelta(seconds=seconds) - self.clock()).total_seconds()
        )
        return await self.worker.recover_all_due()

    async def event_types(self, payment_id: str) -> list[str]:
        async with self.hub.app[keys.ENGINE].connect() as conn:
            query = select(events.c.type).where(events.c.payment_id == payment_id)
            return [row[0] for row in await conn.execute(query.order_by(events.c.seq))]

    async def audit_details(self, payment_id: str) -> list[tuple[str, str]]:
        async with self.hub.app[keys.ENGINE].connect() as conn:
            query = select(audit_log.c.action, audit_log.c.detail).where(
                audit_log.c.payment_id == payment_id
            )
            return [(row[0], row[1]) for row in await conn.execute(query.order_by(audit_log.c.seq))]


@pytest.fixture(name="scene")
async def _scene(tmp_path: Path, database_url: str) -> AsyncIterator[Scene]:
    port = free_port()
    doc, world = settings_document(tmp_path, database_url, port)
    doc["banks"]["momo"] = MOMO | {
        "base_url": f"http://127.0.0.1:{port}/sim/momo",
        "timeout_seconds": 0.5,
    }
    doc["recovery"] = {"enabled": False}
    clock = ManualClock(system_clock())
    world = replace(world, settings=parse_settings(doc, tmp_path / "payhub.toml"), clock=clock)
    async with running_hub(world) as hub:
        yield Scene(hub, clock, clock())


@pytest.mark.parametrize("bank", BANKS)
async def test_a_lost_confirmation_is_recovered_by_query(scene: Scene, bank: str) -> None:
    payment = await scene.create(bank)
    await scene.pay_unheard(bank, payment)
    assert await scene.status(payment["id"]) == "pending"

    assert await scene.at(119) == 0
    assert await scene.at(120) == 1

    assert await scene.status(payment["id"]) == "succeeded"
    assert await scene.event_types(payment["id"]) == ["payment.succeeded"]
    # recovery latency on the default schedule, for a payer who paid at once: the
    # first query, pending_after = 120 s after creation (simulated time)
    assert scene.worker.counts[Settled.SUCCEEDED] == 1


@pytest.mark.parametrize("bank", BANKS)
async def test_a_payer_who_has_not_paid_yet_is_asked_about_again_later(
    scene: Scene, bank: str
) -> None:
    payment = await scene.create(bank)
    assert await scene.at(120) == 1
    assert await scene.at(125) == 0
    await scene.pay_unheard(bank, payment)
    assert await scene.status(payment["id"]) == "pending"
    assert await scene.at(130) == 1  # 10 s after the first query
    assert await scene.status(payment["id"]) == "succeeded"


async def test_momo_api_request_codes_change_nothing_and_are_retried(scene: Scene) -> None:
    payment = await scene.create("momo")
    await scene.pay_unheard("momo", payment)
    await scene.sim("momo", "/_sim/faults", "PUT", query_result_code=41)
    assert await scene.at(120) == 1
    assert await scene.at(130) == 1
    assert await scene.status(payment["id"]) == "pending"
    assert await scene.event_types(payment["id"]) == []
    await scene.sim("momo", "/_sim/faults", "PUT")
    assert await scene.at(160) == 1  # 30 s after the second query
    assert await scene.status(payment["id"]) == "succeeded"


async def test_momo_timeout_leaves_the_payment_unknown_and_a_query_settles_it(
    scene: Scene,
) -> None:
    # MoMo takes the order and its answer is lost on the way back (the hub times out)
    await scene.sim("momo", "/_sim/faults", "PUT", answer_lost_rate=1, hang_seconds=60)
    payment = await scene.create("momo")
    assert payment["status"] == "unknown"
    await scene.sim("momo", "/_sim/faults", "PUT")
    assert payment["payment_url"] is None
    await scene.pay_unheard("momo", payment)

    assert await scene.at(9) == 0
    assert await scene.at(10) == 1

    assert await scene.status(payment["id"]) == "succeeded"
    assert await scene.event_types(payment["id"]) == ["payment.succeeded"]


async def test_momo_timeout_before_the_bank_took_the_order_expires_at_expires_at(
    scene: Scene,
) -> None:
    await scene.sim("momo", "/_sim/faults", "PUT", timeout_rate=1, hang_seconds=60)
    payment = await scene.create("momo", expires_in=300)
    assert payment["status"] == "unknown"
    await scene.sim("momo", "/_sim/faults", "PUT")
    for second in (10, 40, 100, 250, 299):
        await scene.at(second)
        assert await scene.status(payment["id"]) == "unknown"
    await scene.at(300)
    assert await scene.status(payment["id"]) == "expired"
    assert await scene.event_types(payment["id"]) == ["payment.expired"]


async def test_a_refused_order_is_503_and_stores_nothing(scene: Scene) -> None:
    await scene.sim("momo", "/_sim/faults", "PUT", error_rate=1)
    body = payment_body("R-refused", bank="momo")
    created = await scene.hub.portal.create_payment(body, str(uuid.uuid4()))
    assert created.status == 503
    assert created.json()["code"] == "bank_unavailable"
    listed = await scene.hub.app[keys.PAYMENTS].list_for_dossier("demo", "R-refused")
    assert listed == []


@pytest.mark.parametrize("bank", BANKS)
async def test_unpaid_payments_expire_and_a_late_success_is_applied_and_flagged(
    scene: Scene, bank: str
) -> None:
    payment = await scene.create(bank, expires_in=300)
    for second in (120, 130, 160, 220):
        assert await scene.at(second) == 1
    assert await scene.at(299) == 0
    assert await scene.status(payment["id"]) == "pending"
    await scene.at(300)
    assert await scene.status(payment["id"]) == "expired"

    await scene.pay_unheard(bank, payment)
    # queried at 120, 130, 160, 220 and 300 s (expiry): the fifth wait is 15 min
    assert await scene.at(1199) == 0
    assert await scene.at(1200) == 1

    assert await scene.status(payment["id"]) == "succeeded"
    assert await scene.event_types(payment["id"]) == ["payment.expired", "payment.succeeded"]
    action, detail = (await scene.audit_details(payment["id"]))[-1]
    assert action == "payment.succeeded"
    assert '"late": true' in detail or '"late":true' in detail
    assert scene.worker.counts[Settled.LATE_SUCCESS] == 1


# --- refunds whose bank answer never came -------------------------------------------------


async def _paid(scene: Scene, bank: str) -> dict[str, Any]:
    """A payment paid at the bank and settled by a query at 120 s (its IPN lost)."""
    payment = await scene.create(bank)
    await scene.pay_unheard(bank, payment)
    assert await scene.at(120) == 1
    assert await scene.status(payment["id"]) == "succeeded"
    return payment


async def _refund(scene: Scene, payment: dict[str, Any], amount: int) -> dict[str, Any]:
    body = {"amount": amount, "reason": "Nộp trùng"}
    answer = await scene.hub.portal.create_refund(payment["id"], body, str(uuid.uuid4()))
    assert answer.status == 201, answer.body
    refund: dict[str, Any] = answer.json()
    return refund


async def _momo_refunds_at_the_bank(scene: Scene, bank_reference: str) -> list[dict[str, Any]]:
    """The original order's ``refundTrans``, asked of the simulator with a signed query."""
    from banks.momo import wire

    body = {
        "partnerCode": MOMO["partner_code"],
        "requestId": uuid.uuid4().hex,
        "orderId": bank_reference,
        "lang": "vi",
    }
    signed = {**body, "accessKey": MOMO["access_key"]}
    body["signature"] = wire.sign(signed, wire.QUERY_FIELDS, MOMO["secret_key"])
    answer = await scene.sim("momo", wire.QUERY_PATH, **body)
    assert answer["resultCode"] == 0, answer
    refunds: list[dict[str, Any]] = answer["refundTrans"]
    return refunds


async def _refunded_amount(scene: Scene, payment_id: str) -> int:
    payment = await scene.hub.app[keys.PAYMENTS].get("demo", payment_id)
    return payment.refunded_amount


async def test_a_momo_refund_whose_answer_was_lost_is_found_and_applied_once(
    scene: Scene,
) -> None:
    payment = await _paid(scene, "momo")
    await scene.sim("momo", "/_sim/faults", "PUT", answer_lost_rate=1, hang_seconds=60)
    refund = await _refund(scene, payment, 1_000_000)
    assert refund["status"] == "pending"
    await scene.sim("momo", "/_sim/faults", "PUT")
    assert len(await _momo_refunds_at_the_bank(scene, payment["bank_reference"])) == 1

    assert await scene.at(179) == 0
    assert await scene.at(180) == 1  # REFUND_FIRST_QUERY after the refund

    assert scene.worker.refund_counts == {RefundRecovered.SUCCEEDED: 1}
    assert await _refunded_amount(scene, payment["id"]) == 1_000_000
    assert await scene.event_types(payment["id"]) == ["payment.succeeded", "refund.succeeded"]
    at_bank = await _momo_refunds_at_the_bank(scene, payment["bank_reference"])
    assert [r["amount"] for r in at_bank] == [1_000_000]  # asked again, refunded once
    assert await scene.at(240) == 0


async def test_a_momo_refund_that_never_reached_momo_is_sent_by_recovery(scene: Scene) -> None:
    payment = await _paid(scene, "momo")
    await scene.sim("momo", "/_sim/faults", "PUT", error_rate=1)
    refund = await _refund(scene, payment, 1_000_000)
    assert refund["status"] == "pending"
    await scene.sim("momo", "/_sim/faults", "PUT")
    assert await _momo_refunds_at_the_bank(scene, payment["bank_reference"]) == []

    await scene.sim("momo", "/_sim/faults", "PUT", error_rate=1)
    assert await scene.at(180) == 1  # MoMo still refuses: asked again 10 s later
    assert scene.worker.refund_counts == {RefundRecovered.RESCHEDULED: 1}
    await scene.sim("momo", "/_sim/faults", "PUT")
    assert await scene.at(189) == 0
    assert await scene.at(190) == 1

    assert scene.worker.refund_counts[RefundRecovered.SUCCEEDED] == 1
    assert await _refunded_amount(scene, payment["id"]) == 1_000_000
    at_bank = await _momo_refunds_at_the_bank(scene, payment["bank_reference"])
    assert [r["amount"] for r in at_bank] == [1_000_000]


async def test_an_unanswered_vnpay_refund_is_left_to_finance_not_sent_again(
    scene: Scene,
) -> None:
    payment = await _paid(scene, "vnpay")
    await scene.sim("vnpay", "/_sim/faults", "PUT", error_rate=1)
    refund = await _refund(scene, payment, 1_000_000)
    assert refund["status"] == "pending"
    await scene.sim("vnpay", "/_sim/faults", "PUT")

    assert await scene.at(180) == 1
    assert await scene.at(7 * 24 * 3600) == 0  # never claimed again

    assert scene.worker.refund_counts == {RefundRecovered.UNRESOLVED: 1}
    actions = [action for action, _ in await scene.audit_details(payment["id"])]
    assert actions[-2:] == ["refund.requested", "refund.unresolved"]
    assert await _refunded_amount(scene, payment["id"]) == 0
    assert await scene.event_types(payment["id"]) == ["payment.succeeded"]
