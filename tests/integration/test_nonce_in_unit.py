"""One durable round per create: the nonce commits with the payment, replays stay refused.

A signed create's nonce is claimed in the create's own unit of work (with the
idempotency key, the payment, its audit entry); a replayed nonce is still ``401
signature_replayed`` with nothing stored, in the process that saw it first, in another
hub process on the same database, and for a request refused before its use case ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from payhub import keys
from payhub.app import create_app
from payhub.portal.client import encode_json
from tests.e2e.test_portal_api import assert_problem, raw_post, signed, stored_counts
from tests.factories import Hub, free_port, payment_body


async def test_a_create_costs_one_ledger_round(hub: Hub) -> None:
    ledger = hub.app[keys.LEDGER]
    await hub.portal.create_payment(payment_body(), "warm-up")
    units = ledger.units
    created = await hub.portal.create_payment(payment_body("D-one-round"), "one-round")
    assert created.status == 201, created.body
    assert ledger.units - units == 1  # nonce, key, payment and audit in one unit
    replay = await hub.portal.create_payment(payment_body("D-one-round"), "one-round")
    assert replay.status == 200 and replay.json()["id"] == created.json()["id"]


async def test_a_replayed_create_is_refused_before_any_effect(hub: Hub) -> None:
    body = encode_json(payment_body())
    once = signed(hub, body, key="replayed")
    assert (await raw_post(hub, "/v1/payments", body, once)).status == 201
    before = await stored_counts(hub)
    assert_problem(await raw_post(hub, "/v1/payments", body, once), 401, "signature_replayed")
    assert await stored_counts(hub) == before


async def test_a_refused_create_still_uses_up_its_nonce(hub: Hub) -> None:
    """The use case never ran (422), so the nonce is claimed alone; a replay is 401."""
    body = encode_json(payment_body(amount=1))
    once = signed(hub, body, key="refused")
    assert_problem(await raw_post(hub, "/v1/payments", body, once), 422, "validation_failed")
    assert_problem(await raw_post(hub, "/v1/payments", body, once), 401, "signature_replayed")
    missing_key = signed(hub, body, key=None)
    assert_problem(
        await raw_post(hub, "/v1/payments", body, missing_key), 400, "idempotency_key_required"
    )
    assert_problem(
        await raw_post(hub, "/v1/payments", body, missing_key), 401, "signature_replayed"
    )


@asynccontextmanager
async def second_process(hub: Hub) -> AsyncIterator[Hub]:
    """Another hub on the same database (own ledger, own in-process nonce cache)."""
    world = dataclasses.replace(hub.world, port=free_port())
    app = create_app(world.settings, clock=world.clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", world.port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Hub(world=world, app=app, session=session)
    finally:
        await runner.cleanup()


async def test_two_processes_accept_a_nonce_once(hub: Hub) -> None:
    async with second_process(hub) as other:
        body = encode_json(payment_body("D-two"))
        once = signed(hub, body, key="two-processes")
        assert (await raw_post(hub, "/v1/payments", body, once)).status == 201
        before = await stored_counts(hub)
        assert_problem(await raw_post(other, "/v1/payments", body, once), 401, "signature_replayed")
        assert await stored_counts(hub) == before

        race_body = encode_json(payment_body("D-race"))
        racing = signed(hub, race_body, key="race")
        answers = await asyncio.gather(
            raw_post(hub, "/v1/payments", race_body, racing),
            raw_post(other, "/v1/payments", race_body, racing),
        )
        assert sorted(a.status for a in answers) == [201, 401]
        assert [a.json()["code"] for a in answers if a.status == 401] == ["signature_replayed"]
        after = await stored_counts(hub)
        assert after[:2] == (before[0] + 1, before[1] + 1)
