"""Migrations are versioned files applied once, in order, and never silently edited."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.coupons.settings import Settings
from services.coupons.store.migrate import Migration, MigrationError, discover, migrate

pytestmark = [pytest.mark.integration, pytest.mark.blank_database]


async def test_applies_in_order_once_and_refuses_an_edited_file(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first (id int);")
    (tmp_path / "0002_second.sql").write_text("ALTER TABLE first ADD COLUMN name text;")
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await migrate(conn, discover(tmp_path)) == [1, 2]
        assert await migrate(conn, discover(tmp_path)) == []
        columns = await conn.fetch(
            """SELECT column_name FROM information_schema.columns
               WHERE table_name = 'first' ORDER BY 1"""
        )
        assert [c["column_name"] for c in columns] == ["id", "name"]
        edited = [Migration(1, "first", "CREATE TABLE first (id bigint);"), *discover(tmp_path)[1:]]
        with pytest.raises(MigrationError, match="changed after it ran"):
            await migrate(conn, edited)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "0001_broken.sql").write_text(
        "CREATE TABLE half (id int); SELECT no_such_function();"
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, discover(tmp_path))
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


async def test_replicas_starting_together_apply_each_migration_once(settings: Settings) -> None:
    conns = [await asyncpg.connect(settings.database_url) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(v for versions in applied for v in versions) == [
            m.version for m in discover()
        ]
    finally:
        for c in conns:
            await c.close()
