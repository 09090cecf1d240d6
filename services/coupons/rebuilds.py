"""`coupons projections rebuild [NAME]`: replay the event topic into fresh tables and swap
them in (projections/rebuild.py), for one projection or every one that can be rebuilt; and
`coupons contacts rebuild` (services/coupons/contacts/rebuild.py)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from contracts.topics import Topics, declare
from projections.rebuild import (
    Progress,
    RebuildRunning,
    Rebuilt,
    progress_bar,
    quiet,
    rebuild,
)
from services.coupons.bus.topics import ensure_topics
from services.coupons.contacts.rebuild import RebuildRunning as ContactsRebuildRunning
from services.coupons.contacts.rebuild import Rebuilt as RebuiltContacts
from services.coupons.contacts.rebuild import rebuild_contacts
from services.coupons.runtime import PROJECTIONS
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate

REBUILDABLE = {p.name: p for p in PROJECTIONS if p.tables}


@asynccontextmanager
async def _prepared(
    settings: Settings,
) -> AsyncIterator[tuple[Topics, dict[str, int], asyncpg.Pool]]:
    """The topics (made if missing), their partitions, and a pool on a migrated database."""
    topics = declare(settings.topic_prefix, settings.partitions)
    layout = await ensure_topics(
        settings.kafka_bootstrap_servers, topics, settings.replication_factor
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield topics, layout, pool
    finally:
        await pool.close()


def _progress(name: str, show: bool) -> Progress:
    return progress_bar(name) if show else quiet


async def rebuild_projections(
    settings: Settings, names: list[str], show_progress: bool = True
) -> list[Rebuilt]:
    unknown = set(names) - REBUILDABLE.keys()
    if unknown:
        raise SystemExit(f"cannot rebuild {sorted(unknown)}; rebuildable: {sorted(REBUILDABLE)}")
    bootstrap = settings.kafka_bootstrap_servers
    async with _prepared(settings) as (topics, layout, pool):
        done = []
        for name in names or list(REBUILDABLE):
            partitions = layout[topics.events.name]
            progress = _progress(name, show_progress)
            try:
                rebuilt = await rebuild(
                    REBUILDABLE[name], bootstrap, topics, pool, partitions, progress
                )
            except RebuildRunning as error:
                raise SystemExit(str(error)) from error
            done.append(rebuilt)
        return done


async def rebuild_contacts_from(settings: Settings, show_progress: bool = True) -> RebuiltContacts:
    """`coupons contacts rebuild` (services/coupons/contacts/rebuild.py)."""
    bootstrap = settings.kafka_bootstrap_servers
    async with _prepared(settings) as (topics, layout, pool):
        try:
            return await rebuild_contacts(
                bootstrap, topics, pool, layout, lambda name: _progress(name, show_progress)
            )
        except ContactsRebuildRunning as error:
            raise SystemExit(str(error)) from error
