"""The portal-side example of receiving webhooks, as a portal team would copy it, works
against a real hub: a paid dossier reaches the portal's handler once.

``EXAMPLE`` is the text meant for the README's SDK section; keep the two identical.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from payhub.settings import parse_settings
from tests.factories import free_port, payment_body, running_hub, settings_document

EXAMPLE = """
from aiohttp import web
from payhub.portal import Webhook, WebhookReceiver

paid: list[str] = []

async def on_event(webhook: Webhook) -> None:
    # Called once per event: a copy with the same webhook-id is dropped by the receiver.
    if webhook.type == "payment.succeeded":
        paid.append(webhook.data["dossier"]["code"])

def portal_app(hub_url: str) -> web.Application:
    app = web.Application()
    receiver = WebhookReceiver(on_event, jwks_url=f"{hub_url}/.well-known/jwks.json")
    receiver.mount(app, "/payhub/events")
    return app
"""


async def test_the_receiver_example_gets_the_paid_dossier(
    tmp_path: Path, database_url: str
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(EXAMPLE, "example.py", "exec"), namespace)
    portal_port = free_port()
    doc, world = settings_document(tmp_path, database_url, free_port())
    doc["portals"]["demo"]["callback_url"] = f"http://127.0.0.1:{portal_port}/payhub/events"
    world.settings = parse_settings(doc, tmp_path / "payhub.toml")
    runner = web.AppRunner(namespace["portal_app"](world.base_url), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", portal_port).start()
    try:
        async with running_hub(world) as hub:
            body = payment_body("H29.17-261128-0042")
            created = (await hub.portal.create_payment(body, str(uuid.uuid4()))).json()
            await hub.sim_pay(created["payment_url"], "success")
            for _ in range(200):
                if namespace["paid"]:
                    break
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert namespace["paid"] == ["H29.17-261128-0042"]
