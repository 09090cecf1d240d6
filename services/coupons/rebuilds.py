"""`coupons projections rebuild [NAME]`: replay the event topic into fresh tables and swap
them in (projections/rebuild.py), for one projection or every one that can be rebuilt; and
`coupons contacts rebuild` (services/coupons/contacts/rebuild.py)."""

import asyncpg

from contracts.topics import declare
from projections.rebuild import Progress, RebuildRunning, Rebuilt, progress_bar, rebuild
from services.coupons.bus.topics import ensure_topics
from services.coupons.contacts.rebuild import RebuildRunning as ContactsRebuildRunning
from services.coupons.contacts.rebuild import Rebuilt as RebuiltContacts
from services.coupons.contacts.rebuild import rebuild_contacts
from services.coupons.runtime import PROJECTIONS
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate

REBUILDABLE = {p.name: p for p in PROJECTIONS if p.tables}


async def rebuild_projections(
    settings: Settings, names: list[str], show_progress: bool = True
) -> list[Rebuilt]:
    unknown = set(names) - REBUILDABLE.keys()
    if unknown:
        raise SystemExit(f"cannot rebuild {sorted(unknown)}; rebuildable: {sorted(REBUILDABLE)}")
    topics = declare(settings.topic_prefix, settings.partitions)
    bootstrap = settings.kafka_bootstrap_servers
    layout = await ensure_topics(bootstrap, topics, settings.replication_factor)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        done = []
        for name in names or list(REBUILDABLE):

            def quiet(done: int, total: int) -> None:
                pass

            progress: Progress = progress_bar(name) if show_progress else quiet
            partitions = layout[topics.events.name]
            try:
                rebuilt = await rebuild(
                    REBUILDABLE[name], bootstrap, topics, pool, partitions, progress
                )
            except RebuildRunning as error:
                raise SystemExit(str(error)) from error
            done.append(rebuilt)
        return done
    finally:
        await pool.close()


async def rebuild_contacts_from(settings: Settings, show_progress: bool = True) -> RebuiltContacts:
    """`coupons contacts rebuild` (services/coupons/contacts/rebuild.py)."""
    topics = declare(settings.topic_prefix, settings.partitions)
    bootstrap = settings.kafka_bootstrap_servers
    layout = await ensure_topics(bootstrap, topics, settings.replication_factor)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)

        def quiet(done: int, total: int) -> None:
            pass

        def progress(name: str) -> Progress:
            return progress_bar(name) if show_progress else quiet

        try:
            return await rebuild_contacts(bootstrap, topics, pool, layout, progress)
        except ContactsRebuildRunning as error:
            raise SystemExit(str(error)) from error
    finally:
        await pool.close()
