"""`coupons keys create|list|revoke`, on the database (DATABASE_URL or the local stack)."""

import asyncio
import json
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from services.coupons.cli import api
from services.coupons.cli.local import database_url
from services.coupons.store import api_keys
from services.coupons.store.migrate import migrate

app = typer.Typer(help="Create, list and revoke API keys (on the database).")


async def _connect() -> asyncpg.Connection:
    url = database_url()
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        api.fail("database_unreachable", str(error))
    await migrate(conn)
    return conn


@app.command()
def create(
    scope: Annotated[api_keys.Scope, typer.Option(help="admin, checkout or analyst")],
    name: Annotated[str, typer.Option(help="who or what uses it, for the audit trail")],
) -> None:
    """Create a key; the secret is the last line of output, shown once."""

    async def go() -> None:
        conn = await _connect()
        try:
            key, secret = await api_keys.create(conn, name, scope)
        finally:
            await conn.close()
        typer.echo(f"# {key.id} ({key.name}), scope {key.scope}: shown once, store it now")
        typer.echo(secret)

    asyncio.run(go())


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List keys (id, name, scope, created, revoked), never their secrets."""

    async def go() -> list[dict[str, object]]:
        conn = await _connect()
        try:
            return await api_keys.listing(conn)
        finally:
            await conn.close()

    keys = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(keys, default=str))
        return
    table = Table("id", "name", "scope", "created", "revoked")
    for key in keys:
        table.add_row(
            *(str(key[c] or "") for c in ("id", "name", "scope")),
            *(str(key[c])[:19] if key[c] else "" for c in ("created_at", "revoked_at")),
        )
    Console().print(table)


@app.command()
def revoke(key_id: str) -> None:
    """Revoke a key by id (it stops working within 10 s)."""

    async def go() -> bool:
        conn = await _connect()
        try:
            return await api_keys.revoke(conn, key_id)
        finally:
            await conn.close()

    if not asyncio.run(go()):
        api.fail("key_not_found", f"no active key {key_id}")
    typer.echo(f"revoked {key_id}")
