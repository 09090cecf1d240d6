"""`coupons campaigns list|show|create|pause|resume|end`, over the HTTP API."""

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.coupons.cli import api

app = typer.Typer(help="List, show, create, pause, resume and end campaigns (over HTTP).")
JsonOption = Annotated[bool, typer.Option("--json", help="print the API's JSON instead")]


def discount_text(discount: dict[str, Any]) -> str:
    if discount["kind"] == "percent":
        return f"{discount['percent_off']}%"
    return f"{discount['amount_off']} {discount['currency']}"


def campaigns_table(campaigns: list[dict[str, Any]]) -> Table:
    table = Table("id", "name", "status", "discount", "distributed", "redemptions", "expires")
    for c in campaigns:
        table.add_row(
            c["id"],
            c["name"],
            c["status"],
            discount_text(c["discount"]),
            str(c["usage"]["distributed"]),
            str(c["usage"]["redemptions"]),
            str(c["validity"].get("expires_at") or ""),
        )
    return table


@app.command("list")
def list_(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
) -> None:
    """List campaigns, newest first."""
    page = api.from_environment().get("/v1/campaigns", limit=limit)
    if as_json:
        typer.echo(json.dumps(page["data"]))
    else:
        Console().print(campaigns_table(page["data"]))


@app.command()
def show(campaign_id: str, as_json: JsonOption = False) -> None:
    """Show one campaign: its rules and its usage."""
    client = api.from_environment()
    campaign = client.get(f"/v1/campaigns/{campaign_id}")
    usage = client.get(f"/v1/campaigns/{campaign_id}/usage")
    if as_json:
        typer.echo(json.dumps({"campaign": campaign, "usage": usage}))
        return
    table = Table("field", "value", title=f"campaign {campaign['id']}", show_header=False)
    table.add_row("name", campaign["name"])
    table.add_row("status", campaign["status"])
    table.add_row("discount", discount_text(campaign["discount"]))
    table.add_row("code", campaign.get("code") or "(unique codes)")
    for section in ("validity", "limits", "eligibility"):
        table.add_row(section, json.dumps(campaign[section]))
    for name, value in usage.items():
        if name != "campaign_id":
            table.add_row(f"usage {name}", json.dumps(value))
    Console().print(table)


@app.command()
def create(
    name: Annotated[str, typer.Option(help="the campaign's name")],
    percent_off: Annotated[str | None, typer.Option(help="a percent discount, e.g. 20")] = None,
    amount_off: Annotated[int | None, typer.Option(help="an amount off, in minor units")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO 4217, for --amount-off")] = None,
    code: Annotated[str | None, typer.Option(help="a shared code; omit for unique codes")] = None,
    campaign_id: Annotated[str | None, typer.Option("--id", help="its id (default: new)")] = None,
    draft: Annotated[bool, typer.Option(help="create it as a draft, not active")] = False,
    body: Annotated[
        str | None, typer.Option(help="extra JSON merged into the request (limits, validity…)")
    ] = None,
) -> None:
    """Define a campaign; prints its id as the last line."""
    if (percent_off is None) == (amount_off is None):
        api.fail("bad_arguments", "give exactly one of --percent-off and --amount-off")
    discount: dict[str, Any] = (
        {"kind": "percent", "percent_off": percent_off}
        if percent_off is not None
        else {"kind": "amount", "amount_off": amount_off, "currency": currency}
    )
    request: dict[str, Any] = {"name": name, "discount": discount}
    if draft:
        request["status"] = "draft"
    if code:
        request["code"] = code
    if campaign_id:
        request["id"] = campaign_id
    if body:
        try:
            request.update(json.loads(body))
        except json.JSONDecodeError as error:
            api.fail("bad_arguments", f"--body is not JSON: {error}")
    campaign = api.from_environment().post("/v1/campaigns", request)
    typer.echo(f"created {campaign['name']} ({campaign['status']})", err=True)
    typer.echo(campaign["id"])


def _set_status(campaign_id: str, status: str, reason: str) -> None:
    body = {"status": status, "reason": reason}
    campaign = api.from_environment().post(f"/v1/campaigns/{campaign_id}/status", body)
    typer.echo(f"{campaign_id}: {campaign.get('status', status)}")


ReasonOption = Annotated[str, typer.Option(help="why, kept in the audit trail")]


@app.command()
def pause(campaign_id: str, reason: ReasonOption = "paused from the CLI") -> None:
    """Pause an active campaign: its codes are refused until it resumes."""
    _set_status(campaign_id, "paused", reason)


@app.command()
def resume(campaign_id: str, reason: ReasonOption = "resumed from the CLI") -> None:
    """Resume a paused (or activate a draft) campaign."""
    _set_status(campaign_id, "active", reason)


@app.command()
def end(campaign_id: str, reason: ReasonOption = "ended from the CLI") -> None:
    """End a campaign for good."""
    _set_status(campaign_id, "ended", reason)
