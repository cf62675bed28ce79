"""A running hub sends a paid dossier's webhook, checked by code that is not PayHub's.

``v1`` by the ``standardwebhooks`` package, ``v1a`` by plain ``cryptography`` with the
key of the JWKS the hub serves, that JWKS parsed by ``joserfc``; then the SDK receiver
accepts the same request and drops its copy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import KeySet, OKPKey
from multidict import CIMultiDict
from standardwebhooks import Webhook as StandardWebhook

from payhub.portal import Webhook, WebhookReceiver, WebhookVerificationError, WebhookVerifier
from payhub.settings import parse_settings
from payhub.setup import write_private_key
from tests.factories import Hub, free_port, payment_body, running_hub, settings_document

WHSEC = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Captured:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture(name="captured")
async def _captured() -> AsyncIterator[tuple[Captured, int]]:
    captured = Captured()
    app = web.Application()
    app.router.add_post("/payhub/events", captured.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield captured, port
    await runner.cleanup()


@pytest.fixture(name="webhook_hub")
async def _webhook_hub(
    tmp_path: Path, database_url: str, captured: tuple[Captured, int]
) -> AsyncIterator[Hub]:
    doc, world = settings_document(tmp_path, database_url, free_port())
    doc["portals"]["demo"]["callback_url"] = f"http://127.0.0.1:{captured[1]}/payhub/events"
    doc["portals"]["demo"]["whsec"] = WHSEC
    world.settings = parse_settings(doc, tmp_path / "payhub.toml")
    async with running_hub(world) as hub:
        yield hub


async def test_a_paid_dossier_is_delivered_signed_as_the_contract_says(
    webhook_hub: Hub, captured: tuple[Captured, int]
) -> None:
    hub, endpoint = webhook_hub, captured[0]
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(created["payment_url"], "success")
    await asyncio.wait_for(endpoint.arrived.wait(), timeout=10)
    headers, body = endpoint.requests[0]

    document = json.loads(body)
    assert document["type"] == "payment.succeeded"
    assert document["data"]["id"] == created["id"]
    assert document["data"]["status"] == "succeeded"
    assert set(document) == {"type", "timestamp", "data"}
    assert headers["webhook-id"].startswith("evt_")
    events = (await hub.portal.list_events()).json()["data"]
    assert headers["webhook-id"] in [e["id"] for e in events]

    # v1: the Standard Webhooks reference library.
    assert StandardWebhook(WHSEC).verify(body, headers)["data"]["id"] == created["id"]

    # v1a: the served JWKS, parsed by joserfc, checked with plain cryptography.
    async with hub.session.get(f"{hub.base_url}/.well-known/jwks.json") as response:
        assert response.status == 200
        served = await response.json()
    key_set = KeySet.import_key_set(served)
    [jwk] = key_set.keys
    assert isinstance(jwk, OKPKey)
    assert jwk.as_dict()["crv"] == "Ed25519" and jwk.kid == "hub-test"
    public = Ed25519PublicKey.from_public_bytes(
        base64.urlsafe_b64decode(served["keys"][0]["x"] + "=")
    )
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    v1a = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1a,")]
    assert len(v1a) == 1
    public.verify(base64.b64decode(v1a[0]), content)
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(v1a[0]), content + b" ")

    # The SDK accepts it, and refuses it tampered or stale.
    verifier = WebhookVerifier.from_jwks(served, whsec=WHSEC)
    assert verifier.verify(headers, body).id == headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        verifier.verify(headers, body.replace(b"succeeded", b"failed"))
    stale = WebhookVerifier.from_jwks(served, clock=lambda: int(headers["webhook-timestamp"]) + 301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        stale.verify(headers, body)


async def test_the_sdk_receiver_handles_once_and_drops_the_copy(
    webhook_hub: Hub, captured: tuple[Captured, int]
) -> None:
    hub, endpoint = webhook_hub, captured[0]
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(created["payment_url"], "success")
    await asyncio.wait_for(endpoint.arrived.wait(), timeout=10)
    headers, body = endpoint.requests[0]
    handled: list[str] = []

    async def on_event(webhook: Webhook) -> None:
        handled.append(webhook.id)

    receiver = WebhookReceiver(
        on_event, jwks_url=f"{hub.base_url}/.well-known/jwks.json", whsec=WHSEC
    )
    app = web.Application()
    receiver.mount(app, "/in")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        answers = []
        for _ in range(2):
            async with hub.session.post(
                f"http://127.0.0.1:{port}/in", data=body, headers=CIMultiDict(headers)
            ) as response:
                answers.append(response.status)
        forged = {**headers, "webhook-id": "evt_forged"}
        async with hub.session.post(
            f"http://127.0.0.1:{port}/in", data=body, headers=forged
        ) as response:
            answers.append(response.status)
    finally:
        await runner.cleanup()
    assert answers == [204, 204, 400]
    assert handled == [headers["webhook-id"]]
    assert receiver.duplicates == 1 and receiver.rejected == 1


async def test_during_a_rotation_the_hub_serves_and_signs_with_both_keys(
    tmp_path: Path, database_url: str, captured: tuple[Captured, int]
) -> None:
    doc, world = settings_document(tmp_path, database_url, free_port())
    now = datetime.now(UTC)
    for kid, extra in (
        ("hub-old", {"expires_at": now + timedelta(days=3)}),
        ("hub-gone", {"expires_at": now - timedelta(seconds=1)}),
        ("hub-retired", {"retired": True}),
    ):
        write_private_key(tmp_path / "keys" / f"{kid}.pem", Ed25519PrivateKey.generate())
        doc["hub"]["signing_keys"].append(
            {"kid": kid, "private_key_file": f"keys/{kid}.pem", **extra}
        )
    doc["portals"]["demo"]["callback_url"] = f"http://127.0.0.1:{captured[1]}/payhub/events"
    world.settings = parse_settings(doc, tmp_path / "payhub.toml")
    async with running_hub(world) as hub:
        async with hub.session.get(f"{hub.base_url}/.well-known/jwks.json") as response:
            served = await response.json()
        created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
        await hub.sim_pay(created["payment_url"], "success")
        await asyncio.wait_for(captured[0].arrived.wait(), timeout=10)
    assert [key.kid for key in KeySet.import_key_set(served).keys] == ["hub-test", "hub-old"]
    headers, body = captured[0].requests[0]
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    signatures = headers["webhook-signature"].split()
    assert [s.split(",")[0] for s in signatures] == ["v1a", "v1a"]  # no v1 without a whsec
    for jwk, signature in zip(served["keys"], signatures, strict=True):
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "="))
        public.verify(base64.b64decode(signature.split(",", 1)[1]), content)


async def _metric_lines(hub: Hub, name: str, **labels: str) -> list[str]:
    async with hub.session.get(f"{hub.base_url}/metrics") as response:
        assert response.status == 200
        body = await response.text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return [
        line
        for line in body.splitlines()
        if line.startswith(name + "{") and all(label in line for label in wanted)
    ]


async def _metric_value(hub: Hub, name: str, **labels: str) -> float:
    """The sample's value once it appears (the worker delivers in the background)."""
    for _ in range(200):
        found = await _metric_lines(hub, name, **labels)
        if found:
            return float(found[0].rsplit(" ", 1)[1])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} {labels} never appeared")


async def test_delivery_attempts_are_counted_by_portal_and_outcome(
    webhook_hub: Hub, captured: tuple[Captured, int]
) -> None:
    hub, endpoint = webhook_hub, captured[0]
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(created["payment_url"], "success")
    await asyncio.wait_for(endpoint.arrived.wait(), timeout=10)
    attempts = "payhub_webhook_attempts_total"
    assert await _metric_value(hub, attempts, portal="demo", outcome="delivered") == 1.0
    assert not await _metric_lines(hub, attempts, outcome="retry")
    seconds = "payhub_webhook_attempt_seconds_count"
    assert await _metric_value(hub, seconds, portal="demo") == 1.0


async def test_a_portal_that_does_not_answer_shows_as_retries(hub: Hub) -> None:
    """The test hub's portal listens nowhere: its webhook fails and waits for a retry."""
    created = (await hub.portal.create_payment(payment_body(), str(uuid.uuid4()))).json()
    await hub.sim_pay(created["payment_url"], "success")
    attempts = "payhub_webhook_attempts_total"
    assert await _metric_value(hub, attempts, portal="demo", outcome="retry") >= 1.0
    assert not await _metric_lines(hub, attempts, outcome="delivered")
