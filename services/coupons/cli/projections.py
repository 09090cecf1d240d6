"""`coupons projections rebuild`: replay the event topic into fresh tables and swap them in."""

from typing import Annotated

import typer

from services.coupons.cli import api
from services.coupons.cli.local import database_url
from services.coupons.settings import Settings

app = typer.Typer(help="Maintain the read models (on the local stack or DATABASE_URL).")


@app.command()
def rebuild(
    names: Annotated[
        list[str] | None, typer.Argument(help="projections to rebuild; default every one")
    ] = None,
) -> None:
    """Replay the event topic into fresh tables, with a progress bar per projection."""
    import os

    import uvloop

    from services.coupons.rebuilds import REBUILDABLE, rebuild_projections

    if unknown := sorted(set(names or []) - REBUILDABLE.keys()):
        api.fail(
            "unknown_projection", f"cannot rebuild {unknown}; rebuildable: {sorted(REBUILDABLE)}"
        )
    os.environ["DATABASE_URL"] = database_url()
    # uvloop, as `serve` uses: about a tenth less CPU per replayed event than asyncio's loop.
    for rebuilt in uvloop.run(rebuild_projections(Settings(), names or [])):
        typer.echo(
            f"{rebuilt.projection}: {rebuilt.events} events in {rebuilt.seconds:.1f} s"
            f" ({rebuilt.skipped} unreadable skipped)"
        )
