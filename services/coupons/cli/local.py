"""The local stack's database, for the commands that work on it rather than over HTTP."""

import json
import os
from pathlib import Path

import typer

from services.coupons.cli import api


def database_url() -> str:
    """DATABASE_URL, or the database of the local stack `make run` is running; says which."""
    if url := os.environ.get("DATABASE_URL"):
        typer.echo("database: DATABASE_URL", err=True)
        return url
    from services.devstack.stack import ENDPOINTS_FILE, default_state_dir

    running = Path(default_state_dir()) / ENDPOINTS_FILE
    if running.exists():
        typer.echo(f"database: the local stack in {default_state_dir()}", err=True)
        return str(json.loads(running.read_text())["database_url"])
    api.fail("no_database", "set DATABASE_URL, or start the local stack with `make run` first")
