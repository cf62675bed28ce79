"""The portal's event feed (``GET /v1/events``): pages in commit order after a known event.

Event numbers are allocated in commit order (see ``payhub.store.ledger``), so a portal
that pages with the last id it saw never skips an event that committed after it read.
"""

from __future__ import annotations

from typing import Any

from payhub.errors import FieldError, ProblemError
from payhub.service.unit_of_work import Reading, UnitRunner


async def events_page(
    runner: UnitRunner, portal_id: str, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` of the portal's events after event ``after``, and whether more follow."""

    async def read(store: Reading) -> tuple[list[dict[str, Any]], bool]:
        position = 0
        if after:
            found = await store.events.position(portal_id, after)
            if found is None:
                raise ProblemError(
                    "validation_failed",
                    "unknown event id",
                    errors=[FieldError("after", "not an event of this portal")],
                )
            position = found
        rows = await store.events.page(portal_id, after=position, limit=limit + 1)
        return rows[:limit], len(rows) > limit

    return await runner.read(read)
