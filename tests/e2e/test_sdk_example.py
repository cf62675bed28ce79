"""The portal-side example of receiving webhooks, as a portal team would copy it, works
against a real hub: a paid dossier reaches the portal's handler once.

The example is read from README.md ("Portal notifications"), so the two never drift.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from payhub.settings import parse_settings
from tests.factories import free_port, payment_body, running_hub, settings_document


def readme_example() -> str:
    """The README's receiver example, exactly as a portal team would copy it."""
    from tests.e2e.test_first_minutes import readme_blocks

    [example] = readme_blocks("python", "Portal notifications")
    return example


async def test_the_receiver_example_gets_the_paid_dossier(
    tmp_path: Path, database_url: str
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_example(), "example.py", "exec"), namespace)
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
