"""``payhub keys rotate`` and ``payhub events …`` on a setup written by ``payhub init``."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from standardwebhooks import Webhook as StandardWebhook

from payhub.domain.clock import system_clock
from payhub.notify.signing import jwks, signed_content, signing_keys, webhook_signature
from payhub.portal import WebhookVerifier
from payhub.service.unit_of_work import UnitOfWork
from payhub.settings import load_settings
from payhub.setup import HUB_KEY_OVERLAP, public_pem, rotate_hub_key
from payhub.store.audit import verify_chain
from payhub.store.engine import create_engine
from payhub.store.ledger import Ledger
from payhub.store.tables import audit_log, events
from tests.integration.test_cli import _config, _restore_logging, assert_one_line_error, cli

__all__ = ["_config", "_restore_logging"]  # fixtures shared with test_cli
WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_rotation_publishes_and_signs_with_both_keys_during_the_overlap(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [first] = load_settings(config).hub_keys
    code, out, err = cli(capsys, "keys", "rotate", "--config", config)
    assert (code, err) == (0, ""), err
    assert "BEGIN" not in out and "PRIVATE" not in out  # a private key is never printed
    rotated = load_settings(config).hub_keys
    new, old = rotated
    assert old.kid == first.kid and new.kid != first.kid and new.kid in out
    assert stat.S_IMODE((config.parent / "keys" / f"{new.kid}.pem").stat().st_mode) == 0o600
    assert new.expires_at is None and old.expires_at is not None

    now = system_clock()
    assert [k["kid"] for k in jwks(rotated, now)["keys"]] == [new.kid, old.kid]
    body = b'{"type":"payment.succeeded","timestamp":"t","data":{}}'
    timestamp = int(now.timestamp())
    header = webhook_signature(signing_keys(rotated, now), None, "evt_1", timestamp, body)
    signatures = [base64.b64decode(part[4:]) for part in header.split()]
    assert len(signatures) == 2
    content = signed_content("evt_1", timestamp, body)
    new.private_key.public_key().verify(signatures[0], content)
    old.private_key.public_key().verify(signatures[1], content)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(timestamp)}
    # A portal that only knows the old JWKS still verifies during the overlap.
    old_only = WebhookVerifier.from_jwks(jwks([first], now), clock=lambda: timestamp)
    assert old_only.verify({**headers, "webhook-signature": header}, body).id == "evt_1"

    after = now + HUB_KEY_OVERLAP + timedelta(seconds=1)
    assert [k["kid"] for k in jwks(rotated, after)["keys"]] == [new.kid]
    assert len(webhook_signature(signing_keys(rotated, after), None, "e", 1, body).split()) == 1

    third = rotate_hub_key(config, now=after)  # the expired key leaves the file
    assert third.dropped == [old.kid] and [kid for kid, _ in third.overlapping] == [new.kid]
    assert [k.kid for k in load_settings(config).hub_keys] == [third.new_kid, new.kid]


def _dead_events(config: Path, count: int) -> list[str]:
    async def make() -> list[str]:
        engine = create_engine(load_settings(config).database_url)
        ledger = Ledger(engine, system_clock)
        await ledger.start()

        async def unit(tx: UnitOfWork) -> list[str]:
            ids = [
                tx.emit(portal_id="demo", type="payment.failed", payment_id=f"pay_{i}", data={})
                for i in range(count)
            ]
            return ids

        ids = await ledger.run(unit)
        await ledger.close()
        async with engine.begin() as conn:
            await conn.execute(
                update(events).values(delivery_state="dead", attempts=10, next_attempt_at=None)
            )
        await engine.dispose()
        return ids

    return asyncio.run(make())


def _database(config: Path) -> tuple[dict[str, tuple[str, int]], int, bool]:
    async def read() -> tuple[dict[str, tuple[str, int]], int, bool]:
        engine = create_engine(load_settings(config).database_url)
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(events.c.id, events.c.delivery_state, events.c.attempts)
            )
            found = {row.id: (row.delivery_state, row.attempts) for row in rows}
            replays = await conn.scalar(
                select(func.count()).where(audit_log.c.action == "event_replayed")
            )
        ok = (await verify_chain(engine)).ok
        await engine.dispose()
        return found, int(replays or 0), ok

    return asyncio.run(read())


def test_dead_events_are_listed_and_replayed_with_an_audit_entry(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _dead_events(config, 3)
    code, out, _ = cli(capsys, "events", "dead", "--config", config, "--json")
    assert code == 0 and [e["id"] for e in json.loads(out)["data"]] == ids

    code, out, err = cli(capsys, "events", "replay", "--config", config, ids[0])
    assert (code, err) == (0, "") and "replayed 1 event" in out
    code, out, _ = cli(capsys, "events", "replay", "--config", config, "--dead", "--json")
    assert code == 0 and json.loads(out)["replayed"] == ids[1:]
    found, replays, chain_ok = _database(config)
    assert found == {event_id: ("pending", 0) for event_id in ids}
    assert replays == 3 and chain_ok

    code, out, _ = cli(capsys, "events", "replay", "--config", config, ids[0], "evt_nothing")
    assert code == 1 and "evt_nothing: no such event" in out and "still being delivered" in out
    code, _, err = cli(capsys, "events", "replay", "--config", config)
    assert_one_line_error(code, err, "--dead or one or more EVENT_IDs")
    code, _, err = cli(capsys, "events", "enable", "--config", config, "--portal", "nobody")
    assert_one_line_error(code, err, "no portal 'nobody'")
    code, out, _ = cli(capsys, "events", "enable", "--config", config, "--portal", "demo")
    assert code == 0 and "was not disabled" in out


class _Callback(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, dict(self.headers), body))
        if self.path == "/moved":
            self.send_response(308)
            self.send_header("Location", "/payhub/events")
        else:
            self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(405)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(name="callback")
def _callback() -> Iterator[str]:
    _Callback.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_send_test_pings_the_portal_signed_and_says_what_happened(
    config: Path, callback: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pem = tmp_path / "p.pub.pem"
    pem.write_text(public_pem(Ed25519PrivateKey.generate()))
    for portal, path in (("ready", "/payhub/events"), ("moved", "/moved")):
        code, _, err = cli(
            capsys, "portal", "add", portal, "--config", config, "--public-key", pem,
            "--callback", callback + path, "--whsec", WHSEC,
        )  # fmt: skip
        assert code == 0, err

    code, out, err = cli(
        capsys, "events", "send-test", "--config", config, "--portal", "ready", "--json"
    )
    assert (code, err) == (0, ""), err
    report = json.loads(out)
    assert report["status"] == 204 and report["in_time"] and report["ok"]
    assert report["redirects"] == [] and report["latency_ms"] >= 0
    [(path, headers, body)] = _Callback.received
    assert path == "/payhub/events" and headers["webhook-id"] == report["webhook_id"]
    assert StandardWebhook(WHSEC).verify(body, headers) == {
        "type": "ping",
        "timestamp": json.loads(body)["timestamp"],
        "data": {},
    }
    served = jwks(load_settings(config).hub_keys, system_clock())
    assert WebhookVerifier.from_jwks(served).verify(headers, body).type == "ping"

    code, out, _ = cli(capsys, "events", "send-test", "--config", config, "--portal", "moved")
    assert code == 1
    assert "308" in out and f"redirects to {callback}/payhub/events" in out
    assert len(_Callback.received) == 2  # sent once, never retried
    found, _, _ = _database(config)
    assert found == {}  # a ping is no event


def test_the_demo_portal_receives_every_event_through_the_sdk(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = cli(capsys, "demo", "--payments", 12, "--json")
    assert code == 0, err
    summary = json.loads(out)
    hooks = summary["webhooks"]
    assert hooks["events"] == {"delivered": summary["events"]["stored"]}
    assert hooks["handled_by_portal"] == summary["events"]["stored"]
    assert hooks["retries"] >= 1 and hooks["attempts"]["failed"] == hooks["retries"]
    assert hooks["rejected"] == 0
    assert summary["checks"]["every event reached the portal's webhook receiver, handled once"]
