"""A person resolves an exception: who, when, why, once, in the audit trail.

The resolution row and the exception's new status are written in one ledger unit with an
audit entry naming the finance user, the resolution and the note. Resolving changes no
payment: a refund or a correction at the bank is its own act; the note records it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from payhub.errors import ProblemError
from payhub.store import reconciliation as store
from payhub.store.ledger import Ledger, LedgerUnitOfWork

RESOLUTIONS = ("accepted", "refunded", "corrected_at_bank", "settled_manually", "written_off")
"""Suggested resolutions (the page offers them); any short text is accepted."""


async def resolve_exception(
    ledger: Ledger, exception_id: str, *, resolution: str, note: str, user: str
) -> dict[str, Any]:
    """Resolve an open exception; ``not_found`` or ``invalid_state`` (already resolved)."""

    async def unit(work: LedgerUnitOfWork) -> dict[str, Any]:
        conn = await work.writing()
        found = await store.get_exception(conn, exception_id)
        if found is None:
            raise ProblemError("not_found", f"no exception {exception_id!r}")
        if not await store.mark_resolved(conn, exception_id):
            raise ProblemError("invalid_state", f"exception {exception_id} is already resolved")
        now = work.now()
        await conn.execute(
            insert(store.resolutions),
            {
                "exception_id": exception_id,
                "resolution": resolution,
                "note": note,
                "resolved_by": user,
                "resolved_at": now,
            },
        )
        work.audit(
            actor=f"finance:{user}",
            action="reconciliation.resolved",
            payment_id=found["payment_id"],
            detail={
                "exception": exception_id,
                "class": found["class"],
                "run": found["run_id"],
                "resolution": resolution,
                "note": note,
            },
        )
        return {
            **found,
            "status": "resolved",
            "resolution": resolution,
            "note": note,
            "resolved_by": user,
            "resolved_at": now,
        }

    return await ledger.run_in_store(unit)
