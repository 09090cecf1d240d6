"""`coupons`: the operator's command line (Typer, with Rich for tables and progress).

Command groups, one module each: `campaigns`, `codes`, `redemptions` talk to a running service
over HTTP (`COUPONS_URL`, `COUPONS_API_KEY`); `keys`, `projections`, `contacts` and `stripe`
work on the local stack (DATABASE_URL, else the one `make run` started); `run` and `serve`
start the service. Every command says on stderr which it talks to. See docs/cli.md.
"""

import os

import typer

from services.coupons import logs
from services.coupons.cli import (
    campaigns,
    codes,
    contacts,
    keys,
    projections,
    redemptions,
    server,
    stripe,
)

app = typer.Typer(
    name="coupons",
    help="Operate the coupon engine: campaigns, codes, redemptions, keys, projections, Stripe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(server.run)
app.command("serve")(server.serve)
app.add_typer(campaigns.app, name="campaigns")
app.add_typer(codes.app, name="codes")
app.add_typer(redemptions.app, name="redemptions")
app.add_typer(keys.app, name="keys")
app.add_typer(projections.app, name="projections")
app.add_typer(contacts.app, name="contacts")
app.add_typer(stripe.app, name="stripe")


def main() -> None:
    logs.configure(
        os.environ.get("COUPONS_LOG_LEVEL", "INFO"), os.environ.get("COUPONS_LOG_FORMAT")
    )
    app()
