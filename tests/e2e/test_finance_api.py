"""The finance API of CONTRACT §5 over HTTP, against a day made by the real VNPay simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub import keys
from payhub.domain.clock import VIETNAM
from payhub.portal.client import PortalClient, PortalResponse
from payhub.store.tables import audit_log, payments, reconciliation_runs
from tests.factories import Hub, payment_body
from tests.reconcile_world import DAY, FaultyDay, faulty_day, load, snapshot

BOUNDARY = "payhub-test-boundary-7f3a"
PROBLEM = "application/problem+json"


def multipart(fields: dict[str, str], statement: bytes | None) -> bytes:
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    body = "".join(parts).encode()
    if statement is not None:
        body += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="statement"; '
                'filename="statement.csv"\r\nContent-Type: text/csv\r\n\r\n'
            ).encode()
            + statement
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


async def upload(
    hub: Hub,
    client: PortalClient,
    fields: dict[str, str],
    statement: bytes | None,
    *,
    tamper: bool = False,
) -> PortalResponse:
    body = multipart(fields, statement)
    url = client.url("/v1/finance/reconciliations")
    headers = client.sign_headers(
        "POST", url, body=body, content_type=f"multipart/form-data; boundary={BOUNDARY}"
    )
    if tamper:
        body = body.replace(b"2550000", b"2550001", 1)
    async with hub.session.post(url, data=body, headers=headers) as response:
        return PortalResponse(response.status, response.headers, await response.read())


async def simulated_day(hub: Hub) -> tuple[bytes, dict[str, str]]:
    """Two payments through the hub and the simulator: one paid with its IPN lost, one paid."""
    created = []
    for code in ("H29.17-A", "H29.17-B"):
        answer = await hub.portal.create_payment(payment_body(code), f"key-{code}")
        assert answer.status == 201, answer.body
        created.append(answer.json())
    lost, paid = created
    await hub.sim_pay(lost["payment_url"], faults={"lose_confirmation": 1})
    await hub.sim_pay(paid["payment_url"])
    for _ in range(100):
        got = (await hub.portal.get_payment(paid["id"])).json()
        if got["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    today = hub.world.clock().astimezone(VIETNAM)
    async with hub.session.get(
        f"{hub.base_url}/sim/vnpay/_sim/statement", params={"date": today.date().isoformat()}
    ) as response:
        assert response.status == 200
        statement = await response.read()
    return statement, {"lost": lost["id"], "paid": paid["id"], "day": today.date().isoformat()}


async def test_a_simulated_day_reconciles_and_settles_the_lost_confirmation(hub: Hub) -> None:
    statement, ids = await simulated_day(hub)
    assert (await hub.portal.get_payment(ids["lost"])).json()["status"] == "pending"
    answer = await upload(
        hub, hub.finance, {"bank": "vnpay", "business_date": ids["day"]}, statement
    )
    assert answer.status == 201, answer.body
    run = answer.json()
    assert run["id"].startswith("rec_") and run["status"] == "completed"
    assert run["counts"]["settled_by_statement"] == 1
    assert run["counts"]["matched"] == 1
    assert sum(run["counts"].values()) == 2
    assert (await hub.portal.get_payment(ids["lost"])).json()["status"] == "succeeded"
    events = (await hub.portal.list_events()).json()["data"]
    sourced = [e for e in events if e["data"]["id"] == ids["lost"]]
    assert sourced[-1]["type"] == "payment.succeeded"
    assert sourced[-1]["data"]["source"]["reconciliation_id"] == run["id"]

    fetched = await hub.finance.request("GET", f"/v1/finance/reconciliations/{run['id']}")
    assert fetched.status == 200
    assert fetched.json()["exceptions"] == [] and fetched.json()["counts"] == run["counts"]
    csv_answer = await hub.finance.request(
        "GET", f"/v1/finance/reconciliations/{run['id']}/report.csv"
    )
    assert csv_answer.status == 200
    lines = csv_answer.body.decode().splitlines()
    assert lines[0].startswith("line,class,reference")
    assert sorted(line.split(",")[1] for line in lines[1:]) == ["matched", "settled_by_statement"]


async def test_every_class_over_http_and_an_exception_resolved(hub: Hub) -> None:
    day = faulty_day()
    await load(hub.app[keys.ENGINE], day.payments)
    answer = await upload(
        hub, hub.finance, {"bank": "vnpay", "business_date": DAY.isoformat()}, day.csv()
    )
    run = answer.json()
    assert run["counts"] == day.expected
    detail = (await hub.finance.request("GET", f"/v1/finance/reconciliations/{run['id']}")).json()
    mismatch = next(e for e in detail["exceptions"] if e["class"] == "amount_mismatch")
    assert mismatch["status"] == "open" and mismatch["line"] is not None
    path = f"/v1/finance/exceptions/{mismatch['id']}/resolve"
    body = {"resolution": "refunded", "note": "payer refunded the 50,000 VND difference"}
    resolved = await hub.finance.request("POST", path, json=body)
    assert resolved.status == 200, resolved.body
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"] == "finance"
    assert resolved.json()["resolution"] == "refunded"
    again = await hub.finance.request("POST", path, json=body)
    assert again.status == 409 and again.json()["code"] == "invalid_state"
    async with hub.app[keys.ENGINE].connect() as conn:
        entry = (
            (
                await conn.execute(
                    select(audit_log).where(audit_log.c.action == "reconciliation.resolved")
                )
            )
            .mappings()
            .one()
        )
    assert entry["actor"] == "finance:finance"
    assert json.loads(entry["detail"])["note"] == body["note"]
    missing = await hub.finance.request(
        "POST", "/v1/finance/exceptions/exc_nope-1/resolve", json=body
    )
    assert missing.status == 404
    bad = await hub.finance.request("POST", path, json={"resolution": "", "extra": 1})
    assert bad.status == 422 and {e["field"] for e in bad.json()["errors"]} == {
        "resolution",
        "note",
        "extra",
    }


async def runs_recorded(hub: Hub) -> int:
    async with hub.app[keys.ENGINE].connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(reconciliation_runs)) or 0)


async def test_a_portal_may_not_reconcile(hub: Hub) -> None:
    """A portal's valid signature over a valid statement: 403, no run, no payment settled."""
    day = faulty_day()
    await load(hub.app[keys.ENGINE], day.payments)
    before = await snapshot(hub.app[keys.ENGINE])
    fields = {"bank": "vnpay", "business_date": DAY.isoformat()}
    answer = await upload(hub, hub.portal, fields, day.csv())
    assert answer.status == 403 and answer.json()["code"] == "forbidden"
    got = await hub.portal.request("GET", "/v1/finance/reconciliations/rec_x")
    assert got.status == 403
    assert await snapshot(hub.app[keys.ENGINE]) == before
    assert await runs_recorded(hub) == 0


async def test_unsigned_and_tampered_uploads_are_refused(hub: Hub) -> None:
    day = faulty_day()
    await load(hub.app[keys.ENGINE], day.payments)
    body = multipart({"bank": "vnpay", "business_date": DAY.isoformat()}, day.csv())
    async with hub.session.post(
        hub.base_url + "/v1/finance/reconciliations",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    ) as response:
        assert response.status == 401
        assert (await response.json())["code"] == "signature_missing"
    tampered = await upload(
        hub,
        hub.finance,
        {"bank": "vnpay", "business_date": DAY.isoformat()},
        day.csv(),
        tamper=True,
    )
    assert tampered.status == 400 and tampered.json()["code"] == "digest_mismatch"
    async with hub.app[keys.ENGINE].connect() as conn:
        statuses = {r[0] for r in await conn.execute(select(payments.c.status))}
    assert "pending" in statuses  # nothing was settled
    assert await runs_recorded(hub) == 0


async def test_the_signature_is_checked_before_the_body_is_read(hub: Hub) -> None:
    """An unsigned upload announcing 200 MB is answered 401 without sending the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.world.port)
    writer.write(
        b"POST /v1/finance/reconciliations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 200000000\r\n\r\n"
        b"--x\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert b" 401 " in status_line


async def test_bad_requests_get_problems(hub: Hub) -> None:
    fields: dict[str, Any] = {"bank": "nope", "business_date": "27/11/2026"}
    answer = await upload(hub, hub.finance, fields, None)
    assert answer.status == 422
    assert {e["field"] for e in answer.json()["errors"]} == {"bank", "business_date", "statement"}
    url = hub.finance.url("/v1/finance/reconciliations")
    body = b'{"bank": "vnpay"}'
    headers = hub.finance.sign_headers("POST", url, body=body, content_type="application/json")
    async with hub.session.post(url, data=body, headers=headers) as response:
        assert response.status == 415
    unreadable = await upload(
        hub, hub.finance, {"bank": "vnpay", "business_date": "2026-11-27"}, b"garbage\n1,2\n"
    )
    assert unreadable.status == 201
    assert unreadable.json()["status"] == "failed"
    assert "line 1" in unreadable.json()["error"]
    unknown = await hub.finance.request("GET", "/v1/finance/reconciliations/rec_nope")
    assert unknown.status == 404 and unknown.headers["Content-Type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (
            lambda d: d.csv(merchant="OTHER002"),
            "VNPay statement line 2: statement is for account OTHER002, bank vnpay collects "
            "into PAYHUB01",
        ),
        (
            lambda d: d.csv().replace(b",00,", "Jos\u00e9,00,".encode("latin-1"), 1),
            "VNPay statement line 2: not UTF-8",
        ),
        (lambda d: d.csv()[:-14], "VNPay statement line 13: 6 cells, the header has 7"),
        (
            lambda d: d.csv().replace(b",2550000,", b",2550000.5,", 1),
            "VNPay statement line 2: amount 2550000.5 has a fraction of a dong",
        ),
        (lambda d: b"", "VNPay statement is empty (no header line)"),
    ],
)
async def test_a_bad_upload_fails_its_run_naming_the_line_and_changes_nothing(
    hub: Hub, make: Callable[[FaultyDay], bytes], error: str
) -> None:
    day = faulty_day()
    await load(hub.app[keys.ENGINE], day.payments)
    before = await snapshot(hub.app[keys.ENGINE])
    fields = {"bank": "vnpay", "business_date": DAY.isoformat()}
    answer = await upload(hub, hub.finance, fields, make(day))
    assert answer.status == 201, answer.body
    run = answer.json()
    assert run["status"] == "failed" and run["error"] == error
    fetched = await hub.finance.request("GET", f"/v1/finance/reconciliations/{run['id']}")
    assert fetched.json()["status"] == "failed" and fetched.json()["exceptions"] == []
    assert await snapshot(hub.app[keys.ENGINE]) == before
    # the bank's own statement of that day still reconciles
    good = await upload(hub, hub.finance, fields, day.csv())
    assert good.json()["status"] == "completed" and good.json()["counts"] == day.expected
