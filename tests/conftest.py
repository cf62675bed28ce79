"""Shared fixtures: databases (SQLite always, PostgreSQL when configured) and a running hub.

Every storage test takes the ``database_url`` fixture and so runs once per backend:
SQLite always, PostgreSQL too when ``PAYHUB_TEST_POSTGRES_URL`` is set (``.ci/run``
sets it). Backends that are not configured are simply not parametrised, not skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from payhub.store import migrate
from payhub.store.engine import create_engine
from tests.factories import Hub, World, free_port, make_world, running_hub

POSTGRES_URL = os.environ.get("PAYHUB_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
CLEAN_TABLES = (
    "payments",
    "idempotency_keys",
    "events",
    "audit_log",
    "nonces",
    "refunds",
    "delivery_attempts",
    "portal_endpoints",
    "reconciliation_runs",
    "reconciliation_items",
    "reconciliation_exceptions",
    "reconciliation_resolutions",
)


@pytest.fixture(name="sqlite_template", scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "payhub.db"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(name="postgres_database", scope="session")
def _postgres_database() -> Iterator[str | None]:
    """A database of this test session's own on the PostgreSQL server, migrated once."""
    if not POSTGRES_URL:
        yield None
        return
    name = f"payhub_test_{uuid.uuid4().hex[:10]}"
    admin_url = _asyncpg_url(POSTGRES_URL)
    test_url = admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def create() -> None:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        engine = create_engine(test_url)
        await migrate.upgrade(engine)
        await engine.dispose()

    async def drop() -> None:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    asyncio.run(create())
    yield test_url
    asyncio.run(drop())


def _asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


@pytest.fixture(name="database_url", params=BACKENDS)
async def _database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_database: str | None,
) -> str:
    """A migrated, empty database for one test."""
    if request.param == "sqlite":
        path = tmp_path / "payhub.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    assert postgres_database is not None
    engine = create_engine(postgres_database)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(CLEAN_TABLES)} RESTART IDENTITY"))
        await conn.execute(
            text("UPDATE audit_head SET seq = 0, hash = :h, event_seq = 0"), {"h": "0" * 64}
        )
    await engine.dispose()
    return postgres_database


@pytest.fixture(name="world")
def _world(tmp_path: Path, database_url: str) -> World:
    return make_world(tmp_path, database_url, free_port())


@pytest.fixture(name="hub")
async def _hub(world: World) -> AsyncIterator[Hub]:
    """The hub with its simulators mounted, listening on a free local port."""
    async with running_hub(world) as hub:
        yield hub
