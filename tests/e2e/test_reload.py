"""SIGHUP reloads a running hub's portals, finance users and hub keys from payhub.toml.

The hub here runs in-process on a setup written by ``payhub init``; the configuration is
changed the way operators change it (``portal add``, ``keys rotate``, an editor) and
``reload_principals`` is what the SIGHUP handler calls. The signal itself, through
``serve --workers``, is tested in ``tests/integration/test_serve_workers.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from payhub import keys
from payhub.app import create_app, reload_principals
from payhub.notify.lifecycle import DELIVERY
from payhub.portal.client import sign_headers
from payhub.settings import load_settings
from payhub.setup import add_principal, init_setup, rotate_hub_key
from tests.factories import free_port


@dataclass
class Running:
    app: web.Application
    config: Path
    base: str
    session: aiohttp.ClientSession

    async def events_as(self, keyid: str, key: Ed25519PrivateKey) -> int:
        url = f"{self.base}/v1/events"
        headers = sign_headers("GET", url, keyid=keyid, key=key, created=datetime.now(UTC))
        async with self.session.get(url, headers=headers) as answer:
            return answer.status

    async def published_kids(self) -> list[str]:
        async with self.session.get(f"{self.base}/.well-known/jwks.json") as answer:
            return [key["kid"] for key in (await answer.json())["keys"]]


@pytest.fixture(name="running")
async def _running(tmp_path: Path) -> AsyncIterator[Running]:
    port = free_port()
    config = init_setup(tmp_path / "local", port=port)
    app = create_app(load_settings(config), migrate_on_start=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(app, config, f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


def new_portal(config: Path, portal_id: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    public = config.parent / "keys" / f"{portal_id}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    add_principal(
        config, "portals", portal_id, public_key=str(public), callback="https://p.example/hook"
    )
    return key


async def test_a_portal_added_to_the_file_is_served_after_a_reload(running: Running) -> None:
    key = new_portal(running.config, "tinh-bn")
    assert await running.events_as("tinh-bn", key) == 401  # the running hub does not know it

    done = reload_principals(running.app)

    assert (done.portals, done.refused, done.needs_restart) == (2, None, ())
    assert await running.events_as("tinh-bn", key) == 200
    assert "tinh-bn" in running.app[DELIVERY].portals  # its events go to its callback


async def test_a_rotated_hub_key_is_published_and_signs_after_a_reload(running: Running) -> None:
    before = await running.published_kids()
    rotation = rotate_hub_key(running.config)
    assert await running.published_kids() == before

    reload_principals(running.app)

    assert await running.published_kids() == [rotation.new_kid, *before]
    signing = [k.kid for k in running.app[DELIVERY].hub_keys]
    assert signing == [rotation.new_kid, *before]
    assert [k.kid for k in running.app[keys.SETTINGS].current.hub_keys] == signing


async def test_a_portal_removed_from_the_file_is_refused_after_a_reload(
    running: Running,
) -> None:
    key = new_portal(running.config, "tinh-bn")
    reload_principals(running.app)
    assert await running.events_as("tinh-bn", key) == 200
    kept, inside = [], False
    for line in running.config.read_text().splitlines(keepends=True):
        if line.startswith("["):  # a table header: tinh-bn's own, or another's
            inside = "portals.tinh-bn" in line
        if not inside:
            kept.append(line)
    running.config.write_text("".join(kept))

    assert reload_principals(running.app).portals == 1
    assert await running.events_as("tinh-bn", key) == 401


async def test_a_file_that_does_not_load_changes_nothing(running: Running) -> None:
    key = new_portal(running.config, "tinh-bn")
    reload_principals(running.app)
    running.config.write_text(running.config.read_text() + "\n[portals.broken\n")

    done = reload_principals(running.app)

    assert done.refused is not None and "not valid TOML" in done.refused
    assert await running.events_as("tinh-bn", key) == 200


async def test_other_changes_wait_for_a_restart_and_are_named(running: Running) -> None:
    served = running.app[keys.SETTINGS].current
    text = running.config.read_text()
    running.config.write_text(text.replace("rate_limit_per_second", "# rate_limit_per_second"))
    edited = load_settings(running.config)
    changed = edited.rate_limit_per_second != served.rate_limit_per_second
    text = running.config.read_text()
    running.config.write_text(text.replace('"sqlite:///payhub.db"', '"sqlite:///other.db"'))

    done = reload_principals(running.app)

    assert "database_url" in done.needs_restart
    assert ("rate_limit_per_second" in done.needs_restart) is changed
    current = running.app[keys.SETTINGS].current
    assert current.database_url == served.database_url
    assert current.rate_limit_per_second == served.rate_limit_per_second
