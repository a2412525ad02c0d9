"""Recompute every aggregate from the ledger (the `rebuild` command).

Why the ledger and not a replay of the stream: the stream may be trimmed (it is a transport,
not an archive), and stats may not read history's database. The ledger is this service's
own record of every event it counted, so a rebuild needs nothing but its own database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.stats_service.repository import StatsRepository


@dataclass(frozen=True)
class RebuildResult:
    events: int


async def rebuild(sessions: async_sessionmaker[AsyncSession]) -> RebuildResult:
    """One transaction: readers see the old aggregates until the new ones are complete."""
    async with sessions() as session, session.begin():
        repository = StatsRepository(session)
        await repository.lock_for_rebuild()
        await repository.recompute_all()
        return RebuildResult(events=await repository.ledger_size())
