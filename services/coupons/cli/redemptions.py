"""`coupons redemptions show`, over the HTTP API."""

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.coupons.cli import api

app = typer.Typer(help="Look up redemptions (over HTTP).")


@app.command()
def show(
    redemption_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Show one redemption: its code, campaign, contact, amounts and status."""
    redemption = api.from_environment().get(f"/v1/redemptions/{redemption_id}")
    if as_json:
        typer.echo(json.dumps(redemption))
        return
    table = Table("field", "value", title=f"redemption {redemption_id}", show_header=False)
    for name, value in redemption.items():
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    Console().print(table)
