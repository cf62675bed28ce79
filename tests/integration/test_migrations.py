"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.engine import Connection

from payhub.store import migrate
from payhub.store.engine import create_engine
from payhub.store.tables import audit_head, metadata


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    engine = create_engine(database_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(differences)
            genesis = (await conn.execute(select(audit_head))).mappings().all()
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()
    assert diff == []
    assert [dict(row) for row in genesis] == [{"id": 1, "seq": 0, "hash": "0" * 64, "event_seq": 0}]
