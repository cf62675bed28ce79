"""``payhub bench``: every scenario measured, every answer checked, preload keeps the chain.

Only the bench's honesty is tested here, never a timing: a run on a tiny load must report
every scenario with no wrong answer, a wrong answer must be counted, and a preloaded
database must hold the payments, events and audit entries it claims with the audit chain
intact and the hub still serving on it.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from payhub.bench import (
    FLOOR_SOURCE,
    HMAC_PORTAL,
    _create_body,
    _prepare,
    _run_external,
    _sqlite_path,
    _start_hub,
    _stop,
    check_baseline,
    check_confirms,
    check_creates,
    signed_creates,
    signed_ipns,
)
from payhub.bench_load import Outcome, http_request, send_all
from payhub.bench_preload import preload_payments
from payhub.cli import main
from payhub.portal.client import encode_json, sign_headers
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the bench reads process CPU from /proc"
)


def outcome(answers: list[tuple[int, bytes]]) -> Outcome:
    return Outcome(len(answers), 1.0, [0.001] * len(answers), answers, 0.0, None)


def test_a_small_run_reports_every_scenario_and_no_wrong_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["bench", "--requests", "60", "--concurrency", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["wrong_answers"] == 0
    assert report["log_level"].startswith("info")
    empty = report["empty"]
    measured = {
        "floor-ed25519",
        "floor-hmac",
        "floor-durable",
        "create-ed25519",
        "create-hmac",
        "confirm",
        "confirm-momo",
        "confirm-vietqr",
    }
    assert set(empty["scenarios"]) == {"ceiling", "baseline", *measured}
    assert set(empty["ratio_to_baseline"]) == measured
    for row in empty["scenarios"].values():
        assert row["requests"] == 60
        assert row["per_second"] > 0
    assert empty["database_check"] == {
        "answered_but_not_stored": 0,
        "confirmed_but_not_succeeded": 0,
        "confirmed_without_event": 0,
        "confirmed_without_audit": 0,
    }


def test_wrong_answers_are_counted() -> None:
    good = json.dumps(
        {"id": "pay_1", "status": "pending", "amount": 5, "bank_reference": "PH1",
         "payment_url": "https://bank/pay?vnp_TxnRef=PH1"}
    ).encode()  # fmt: skip
    wrong_reference = good.replace(b"vnp_TxnRef=PH1", b"vnp_TxnRef=PH2")
    wrong, created = check_creates(
        outcome([(201, good), (200, good), (201, wrong_reference), (201, b"{"), (0, b"")]),
        [5, 5, 5, 5, 5],
    )
    assert wrong == 4
    assert created == [{"id": "pay_1", "bank_reference": "PH1", "amount": 5}]
    assert check_creates(outcome([(201, good)]), [6])[0] == 1
    assert check_baseline(outcome([(201, b'{"amount": 5}'), (201, b'{"amount": 6}')]), [5, 5]) == 1
    confirmed = b'{"RspCode": "00", "Message": "Confirm Success"}'
    assert check_confirms(outcome([(200, confirmed), (200, b'{"RspCode": "02"}')])) == 1


@pytest.mark.parametrize("mode", ["auth", "durable"])
async def test_the_floor_checks_every_signature_it_is_sent(mode: str) -> None:
    """A floor is an upper bound only if it really authenticates: forged and replayed
    requests are refused there, as the hub refuses them."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with tempfile.TemporaryDirectory() as name:
        setup = await _prepare(Path(name), None, 1)
        keys = str(setup.folder / "keys")
        database = str(setup.folder / "floor.db")
        port, floor = await _run_external(
            setup.folder, "floor", FLOOR_SOURCE, 1, "/readyz", None, keys, database, mode
        )
        try:
            good, amounts = signed_creates(port, "demo", setup.demo_key, "F", 2)
            hmac_good, _ = signed_creates(port, HMAC_PORTAL, setup.hmac_secret, "G", 1)
            forged, _ = signed_creates(port, "demo", Ed25519PrivateKey.generate(), "H", 1)
            wrong_secret, _ = signed_creates(port, HMAC_PORTAL, b"x" * 32, "I", 1)
            sent = [*good, *hmac_good, forged[0], wrong_secret[0], good[0]]
            answers = (await send_all(port, sent, 1, [])).answers
        finally:
            await _stop(floor)
        stored = sqlite3.connect(database).execute("SELECT count(*) FROM payments").fetchone()
    statuses = [status for status, _ in answers]
    assert statuses == [201, 201, 201, 401, 401, 401]
    assert [json.loads(body).get("code") for _, body in answers[3:]] == [
        "signature_invalid",
        "signature_invalid",
        "signature_replayed",
    ]
    assert [json.loads(body)["amount"] for _, body in answers[:2]] == amounts
    assert stored[0] == (3 if mode == "durable" else 0)


async def test_the_durable_floor_validates_what_it_stores() -> None:
    with tempfile.TemporaryDirectory() as name:
        setup = await _prepare(Path(name), None, 1)
        keys = str(setup.folder / "keys")
        database = str(setup.folder / "floor.db")
        port, floor = await _run_external(
            setup.folder, "floor", FLOOR_SOURCE, 1, "/readyz", None, keys, database, "durable"
        )
        try:
            good, _ = signed_creates(port, HMAC_PORTAL, setup.hmac_secret, "V", 1)
            body = encode_json({**_create_body("W", 1), "amount": -5})
            headers = sign_headers(
                "POST", f"http://127.0.0.1:{port}/v1/payments", keyid=HMAC_PORTAL,
                key=setup.hmac_secret, created=datetime.now(UTC), body=body,
                content_type="application/json", idempotency_key=str(uuid.uuid4()),
            )  # fmt: skip
            invalid = http_request("POST", "/v1/payments", port, headers, body)
            answers = (await send_all(port, [good[0], invalid], 1, [])).answers
        finally:
            await _stop(floor)
        stored = sqlite3.connect(database).execute("SELECT count(*) FROM payments").fetchone()
    assert [status for status, _ in answers] == [201, 422]
    assert json.loads(answers[1][1])["code"] == "validation_failed"
    assert stored[0] == 1


async def test_preload_clones_what_the_hub_wrote_and_keeps_the_chain() -> None:
    with tempfile.TemporaryDirectory() as name:
        setup = await _prepare(Path(name), None, 1)
        hub = await _start_hub(setup)
        try:
            requests, amounts = signed_creates(setup.port, "demo", setup.demo_key, "T", 6)
            wrong, created = check_creates(await send_all(setup.port, requests, 3, []), amounts)
            assert wrong == 0
            ipns = signed_ipns(setup.port, created[:3], setup.tmn_code, setup.hash_secret)
            assert check_confirms(await send_all(setup.port, ipns, 3, [])) == 0
        finally:
            await _stop(hub)

        path = _sqlite_path(setup.database_url)
        added = preload_payments(path, 1000)
        assert added["payments"] == 1000
        with sqlite3.connect(path) as db:
            counts = {
                status: n
                for status, n in db.execute("SELECT status, count(*) FROM payments GROUP BY status")
            }
            assert counts == {"succeeded": 3 + 700, "pending": 3 + 300}
            assert db.execute("SELECT count(DISTINCT bank_reference) FROM payments").fetchone()[
                0
            ] == sum(counts.values())
            events = db.execute("SELECT count(*) FROM events").fetchone()[0]
            assert (
                events
                == added["events"]
                + db.execute(
                    "SELECT count(*) FROM events WHERE payment_id NOT LIKE 'pay_00%'"
                ).fetchone()[0]
            )
        engine = create_engine(setup.database_url)
        try:
            report = await verify_chain(engine)
        finally:
            await engine.dispose()
        assert report.ok, report
        assert report.entries >= added["audit_log"]

        hub = await _start_hub(setup)
        try:
            requests, amounts = signed_creates(setup.port, "demo", setup.demo_key, "U", 4)
            wrong, created = check_creates(await send_all(setup.port, requests, 2, []), amounts)
            assert wrong == 0
            ipns = signed_ipns(setup.port, created, setup.tmn_code, setup.hash_secret)
            assert check_confirms(await send_all(setup.port, ipns, 2, [])) == 0
        finally:
            await _stop(hub)
        engine = create_engine(setup.database_url)
        try:
            assert (await verify_chain(engine)).ok
        finally:
            await engine.dispose()
