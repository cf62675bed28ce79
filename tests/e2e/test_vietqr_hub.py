"""VietQR end to end: the hub and the collecting bank's simulator talking over real HTTP.

The portal creates a payment on the ``vietqr`` bank (a QR computed by the hub, no call to
the bank), a payer transfers at the simulator, and the bank pushes a signed camt.054 to
the hub, which answers 200 once every credit's effect is committed.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from banks.vietqr.connector import VietqrConnector
from banks.vietqr.emvco import decode_vietqr
from banks.vietqr.signing import HEADER
from payhub import keys
from payhub.connectors.port import PrivateFile
from payhub.domain.clock import to_vietnam
from payhub.settings import parse_settings
from payhub.store.tables import audit_log, events
from tests.e2e.test_payment_flow import wait_for_status
from tests.factories import Hub, free_port, payment_body, running_hub, settings_document


@pytest.fixture(name="hub")
async def _vietqr_hub(tmp_path: Path, database_url: str) -> AsyncIterator[Hub]:
    port = free_port()
    doc, world = settings_document(tmp_path, database_url, port)
    options = VietqrConnector.demo_options(f"http://127.0.0.1:{port}/sim/vietqr")
    key_file = options["simulator_signing_key_file"]
    assert isinstance(key_file, PrivateFile)  # as payhub init writes it
    (tmp_path / key_file.name).write_bytes(key_file.content)
    options["simulator_signing_key_file"] = str(tmp_path / key_file.name)
    doc["banks"]["vietqr"] = {"connector": "vietqr", **options}
    world = replace(world, settings=parse_settings(doc, tmp_path / "payhub.toml"))
    async with running_hub(world) as hub:
        yield hub


async def vietqr_payment(hub: Hub, code: str = "H29.17-261127-0001") -> dict[str, Any]:
    created = await hub.portal.create_payment(payment_body(code, bank="vietqr"), str(uuid.uuid4()))
    assert created.status == 201, created.body
    payment: dict[str, Any] = created.json()
    return payment


async def sim(hub: Hub, path: str, method: str = "POST", **body: Any) -> Any:
    url = f"{hub.base_url}/sim/vietqr{path}"
    async with hub.session.request(method, url, json=body or None) as response:
        assert response.status in (200, 202), await response.text()
        return await response.json()


async def pay(hub: Hub, reference: str, outcome: str = "success", **extra: Any) -> Any:
    return await sim(hub, "/_sim/pay", reference=reference, outcome=outcome, **extra)


def answers(report: dict[str, Any]) -> list[list[Any]]:
    return [[a.get("http_status") for a in c["answers"]] for c in report["confirmations"]]


def outcomes(report: dict[str, Any]) -> list[list[Any]]:
    return [[a.get("outcomes") for a in c["answers"]] for c in report["confirmations"]]


async def status_and_events(hub: Hub, payment_id: str) -> tuple[str, int]:
    status = (await hub.portal.get_payment(payment_id)).json()["status"]
    async with hub.app[keys.ENGINE].connect() as conn:
        query = select(func.count()).where(events.c.payment_id == payment_id)
        return status, int((await conn.execute(query)).scalar_one())


async def audits(hub: Hub, payment_id: str, action: str) -> list[dict[str, Any]]:
    async with hub.app[keys.ENGINE].connect() as conn:
        query = select(audit_log.c.detail).where(
            audit_log.c.payment_id == payment_id, audit_log.c.action == action
        )
        return [json.loads(row) for row in (await conn.execute(query)).scalars()]


async def test_the_qr_names_the_collection_account_amount_and_reference(hub: Hub) -> None:
    payment = await vietqr_payment(hub)
    options = hub.world.settings.banks["vietqr"].options

    qr = decode_vietqr(payment["qr"])

    assert (qr.bin, qr.account) == (options["bin"], options["account"])
    assert (qr.amount, qr.purpose) == (payment["amount"], payment["bank_reference"])
    async with hub.session.get(payment["payment_url"]) as page:
        assert page.status == 200
        assert payment["bank_reference"] in await page.text()
    async with hub.session.get(payment["payment_url"].replace("/qr?", "/qr.png?")) as image:
        assert image.status == 200 and image.content_type == "image/png"
        assert (await image.read()).startswith(b"\x89PNG\r\n\x1a\n")


async def test_paid_by_qr_payload(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"])

    assert answers(report) == [[200]]
    assert outcomes(report) == [[["applied"]]]
    paid = await wait_for_status(hub, payment["id"], "succeeded")
    assert paid["bank"] == "vietqr"
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_paid_by_bank_reference(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["bank_reference"], amount=payment["amount"])

    assert answers(report) == [[200]]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_a_typed_reference_needs_an_amount_the_bank_can_know(hub: Hub) -> None:
    payment = await vietqr_payment(hub)
    url = f"{hub.base_url}/sim/vietqr/_sim/pay"
    async with hub.session.post(url, json={"reference": payment["bank_reference"]}) as refused:
        assert refused.status == 400
        assert (await refused.json())["code"] == "amount_required"

    async with hub.session.get(payment["payment_url"]) as page:  # the payer saw the QR
        assert page.status == 200
    report = await pay(hub, payment["bank_reference"])

    assert report["payments"][0]["amount"] == payment["amount"]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_mangled_transfer_text_still_finds_its_payment(hub: Hub) -> None:
    await sim(hub, "/_sim/faults", "PUT", mangle_text=1)
    for index in range(8):
        payment = await vietqr_payment(hub, f"H29.17-261127-{index:04d}")

        report = await pay(hub, payment["qr"])

        text = report["payments"][0]["text"]
        assert text != payment["bank_reference"]
        assert answers(report) == [[200]], text
        assert await status_and_events(hub, payment["id"]) == ("succeeded", 1), text


@pytest.mark.parametrize("delta", [-1_000, 50_000])
async def test_a_wrong_amount_is_kept_unpaid_and_audited(hub: Hub, delta: int) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], "wrong_amount", amount=payment["amount"] + delta)

    assert answers(report) == [[200]]  # received: the bank need not send it again
    assert outcomes(report) == [[["amount_mismatch"]]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)
    [mismatch] = await audits(hub, payment["id"], "confirmation.amount_mismatch")
    assert mismatch["expected"] == payment["amount"]
    assert mismatch["confirmed"] == payment["amount"] + delta


async def test_wrong_amount_defaults_to_less_than_the_qr(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], "wrong_amount")

    assert report["payments"][0]["amount"] == payment["amount"] - 1_000
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_paying_twice_pays_once_and_records_the_second_transfer(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], "pay_twice")

    assert outcomes(report) == [[["applied"]], [["already_applied"]]]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)
    [second] = await audits(hub, payment["id"], "confirmation.second_payment")
    assert second["bank_transaction_id"] == report["payments"][1]["transaction_id"]


@pytest.mark.parametrize("status", ["PDNG", "INFO"])
async def test_pending_and_information_entries_never_pay(hub: Hub, status: str) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], faults={"notify_status": status})

    assert outcomes(report) == [[["ignored"]]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


@pytest.mark.parametrize("reordered", [False, True])
async def test_pending_then_booked_pays_once(hub: Hub, reordered: bool) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(
        hub, payment["qr"], faults={"pending_first": True, "reorder_confirmations": reordered}
    )

    expected = [[["applied"]], [["ignored"]]] if reordered else [[["ignored"]], [["applied"]]]
    assert outcomes(report) == expected
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_a_batched_document_applies_each_credit(hub: Hub) -> None:
    first = await vietqr_payment(hub, "H29.17-261127-0001")
    second = await vietqr_payment(hub, "H29.17-261127-0002")
    await sim(hub, "/_sim/faults", "PUT", hold_credits=True, mangle_text=1)
    await pay(hub, first["qr"])
    await pay(hub, "Chuyen tien hoc phi thang 11", amount=700_000)
    held = await pay(hub, second["qr"])
    assert held["confirmations"] == [] and held["held"] == 3
    assert await status_and_events(hub, first["id"]) == ("pending", 0)

    report = await sim(hub, "/_sim/flush")

    assert report["credits"] == 3
    assert outcomes(report) == [[["applied", "unknown_order", "applied"]]]
    assert answers(report) == [[200]]
    assert await status_and_events(hub, first["id"]) == ("succeeded", 1)
    assert await status_and_events(hub, second["id"]) == ("succeeded", 1)


@pytest.mark.parametrize("concurrent", [False, True])
async def test_duplicated_notifications_apply_once(hub: Hub, concurrent: bool) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(
        hub,
        payment["qr"],
        faults={"duplicate_confirmation": 3, "concurrent_duplicates": concurrent},
    )

    assert answers(report) == [[200] * 4]
    assert sorted(o[0] for o in outcomes(report)[0]) == ["already_applied"] * 3 + ["applied"]
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


@pytest.mark.parametrize(
    ("knob", "reported"), [("tamper_amount", "tampered"), ("bad_signature", "bad_signature")]
)
async def test_forged_notifications_are_refused(hub: Hub, knob: str, reported: str) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], faults={knob: 1, "ipn_retries": 0})

    assert report["confirmations"][0][reported] is True
    assert answers(report) == [[400]]
    assert outcomes(report) == [[["signature_invalid"]]]
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_an_unsigned_push_is_refused(hub: Hub) -> None:
    payment = await vietqr_payment(hub)
    url = f"{hub.base_url}/banks/vietqr/notify"
    for headers in ({}, {HEADER: ""}, {HEADER: "not base64!"}):
        async with hub.session.post(url, data=b"<Document/>", headers=headers) as response:
            assert response.status == 400
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_refunds_are_not_supported(hub: Hub) -> None:
    payment = await vietqr_payment(hub)
    await pay(hub, payment["qr"])
    await wait_for_status(hub, payment["id"], "succeeded")

    refused = await hub.portal.create_refund(payment["id"], {"amount": 150_000}, "v1")

    assert refused.status == 422
    assert refused.json()["type"].endswith("refund_not_supported")
    assert (await hub.portal.get_payment(payment["id"])).json()["refunded_amount"] == 0


async def test_statement_camt053_reads_back_what_happened(hub: Hub) -> None:
    paid = await vietqr_payment(hub, "H29.17-261127-0001")
    short = await vietqr_payment(hub, "H29.17-261127-0002")
    stuck = await vietqr_payment(hub, "H29.17-261127-0003")
    await sim(hub, "/_sim/faults", "PUT", mangle_text=1)
    made = [
        (await pay(hub, paid["qr"]))["payments"][0],
        (await pay(hub, short["qr"], "wrong_amount"))["payments"][0],
    ]
    await pay(hub, stuck["qr"], faults={"notify_status": "PDNG"})  # never booked
    day = to_vietnam(hub.world.clock()).date()

    async with hub.session.get(
        f"{hub.base_url}/sim/vietqr/_sim/statement", params={"date": day.isoformat()}
    ) as response:
        assert response.status == 200
        data = await response.read()
    connector = hub.app[keys.CONNECTORS]["vietqr"]
    lines = list(connector.read_statement(io.BytesIO(data)))

    assert [(line.bank_transaction_id, line.amount, line.text) for line in lines] == [
        (m["transaction_id"], m["amount"], m["text"]) for m in made
    ]
    assert [line.reference for line in lines] == [
        paid["bank_reference"],
        short["bank_reference"],
    ]
    assert all(line.settled for line in lines)  # BOOK; the PDNG credit is not on it
    async with hub.session.get(
        f"{hub.base_url}/sim/vietqr/_sim/statement", params={"date": "2001-01-01"}
    ) as response:
        assert list(connector.read_statement(io.BytesIO(await response.read()))) == []


@pytest.mark.parametrize("outcome", ["abandon", "insufficient_funds"])
async def test_no_transfer_no_notification(hub: Hub, outcome: str) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], outcome)

    assert report["payments"] == [] and report["confirmations"] == []
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_a_late_payer_is_notified_later(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(hub, payment["qr"], "late", delay_seconds=0.05)

    assert report == {
        "reference": payment["bank_reference"],
        "outcome": "late",
        "delay_seconds": 0.05,
    }
    await wait_for_status(hub, payment["id"], "succeeded")
    assert await status_and_events(hub, payment["id"]) == ("succeeded", 1)


async def test_a_refused_notification_is_resent_on_the_banks_schedule(hub: Hub) -> None:
    payment = await vietqr_payment(hub)

    report = await pay(
        hub,
        payment["qr"],
        faults={"bad_signature": 1, "ipn_retries": 2, "ipn_retry_seconds": 0.01},
    )

    assert report["confirmations"][0]["retry_scheduled"] is True
    for _ in range(100):
        sent = await sim(hub, "/_sim/confirmations", "GET")
        if len(sent) == 3:
            break
        await asyncio.sleep(0.02)
    assert [entry["attempt"] for entry in sent] == [0, 1, 2]
    assert {entry["answers"][0]["http_status"] for entry in sent} == {400}
    assert await status_and_events(hub, payment["id"]) == ("pending", 0)


async def test_a_vietqr_day_reconciles_from_its_camt053(hub: Hub) -> None:
    """The bank's real camt.053 of the day, uploaded by finance: the lost credit is settled,
    the short transfer stays an exception, the paid one matches."""
    from tests.e2e.test_finance_api import upload

    paid = await vietqr_payment(hub, "H29.17-261127-0011")
    lost = await vietqr_payment(hub, "H29.17-261127-0012")
    short = await vietqr_payment(hub, "H29.17-261127-0013")
    await sim(hub, "/_sim/faults", "PUT", mangle_text=1)
    await pay(hub, paid["qr"])
    await pay(hub, lost["qr"], faults={"lose_confirmation": 1})
    await pay(hub, short["qr"], "wrong_amount")
    await wait_for_status(hub, paid["id"], "succeeded")
    assert (await hub.portal.get_payment(lost["id"])).json()["status"] == "pending"
    day = to_vietnam(hub.world.clock()).date().isoformat()
    async with hub.session.get(
        f"{hub.base_url}/sim/vietqr/_sim/statement", params={"date": day}
    ) as response:
        assert response.status == 200
        statement = await response.read()
    account = hub.world.settings.banks["vietqr"].options["account"]
    assert f"<Id>{account}</Id>".encode() in statement

    other = statement.replace(f"<Id>{account}</Id>".encode(), b"<Id>0099887766</Id>")
    refused = await upload(hub, hub.finance, {"bank": "vietqr", "business_date": day}, other)
    assert refused.status == 201 and refused.json()["status"] == "failed"
    assert refused.json()["error"] == (
        "camt line 8, Stmt/Acct/Id: statement is for account 0099887766, bank vietqr collects "
        f"into {account}"
    )
    assert (await hub.portal.get_payment(lost["id"])).json()["status"] == "pending"

    answer = await upload(hub, hub.finance, {"bank": "vietqr", "business_date": day}, statement)

    assert answer.status == 201, answer.body
    counts = answer.json()["counts"]
    assert counts.get("matched") == 1
    assert counts.get("settled_by_statement") == 1
    assert counts.get("amount_mismatch") == 1
    assert (await hub.portal.get_payment(lost["id"])).json()["status"] == "succeeded"
    assert (await hub.portal.get_payment(short["id"])).json()["status"] == "pending"
