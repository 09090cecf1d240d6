"""`coupons contacts rebuild`: profiles and memberships replayed from the topics, swapped in."""

import typer

from services.coupons.cli.local import database_url
from services.coupons.settings import Settings

app = typer.Typer(help="Maintain contact profiles and memberships (local stack or DATABASE_URL).")


@app.command()
def rebuild() -> None:
    """Replay the contact events and the coupon facts into fresh tables, swap them in, and
    reconcile every profile with the live segments (progress on stderr)."""
    import os

    import uvloop

    from services.coupons.rebuilds import rebuild_contacts_from

    os.environ["DATABASE_URL"] = database_url()
    rebuilt = uvloop.run(rebuild_contacts_from(Settings()))
    typer.echo(
        f"contacts: {rebuilt.contact_events} contact events and {rebuilt.coupon_events} coupon"
        f" facts in {rebuilt.seconds:.1f} s ({rebuilt.skipped} unreadable skipped);"
        f" {rebuilt.profiles} profiles, {rebuilt.messages} entered/left messages"
    )
