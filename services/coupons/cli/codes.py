"""`coupons codes generate|export`, over the HTTP API, with Rich progress bars."""

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from services.coupons.cli import api

EXPORT_COLUMNS = (TextColumn("export"), DownloadColumn(), TimeElapsedColumn())
app = typer.Typer(help="Generate unique codes and export them (over HTTP).")


@app.command()
def generate(
    campaign_id: str,
    count: Annotated[int, typer.Option(help="how many unique codes (up to 1,000,000)")],
    prefix: Annotated[str | None, typer.Option(help="the codes' prefix")] = None,
    length: Annotated[int | None, typer.Option(help="random characters after the prefix")] = None,
    wait: Annotated[bool, typer.Option(help="follow the job with a progress bar")] = True,
    poll: Annotated[float, typer.Option(help="seconds between progress checks")] = 0.5,
) -> None:
    """Start a code generation job and show its progress until it is done; prints its id."""
    pattern: dict[str, Any] = {}
    if prefix is not None:
        pattern["prefix"] = prefix
    if length is not None:
        pattern["length"] = length
    client = api.from_environment()
    body: dict[str, Any] = {"count": count}
    if pattern:
        body["pattern"] = pattern
    job = client.post(f"/v1/campaigns/{campaign_id}/code-batches", body)
    if wait:
        columns = (TextColumn("codes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task("codes", total=job["requested"])
            while job["status"] == "running":
                progress.update(task, completed=job["generated"])
                time.sleep(poll)
                job = client.get(f"/v1/code-batches/{job['id']}")
            progress.update(task, completed=job["generated"])
        if job["status"] == "failed":
            api.fail("job_failed", f"batch {job['id']}: {job.get('error')}")
        typer.echo(f"{job['generated']} codes generated", err=True)
    typer.echo(job["id"])


@app.command()
def export(
    campaign_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="the CSV file to write")],
) -> None:
    """Export a campaign's unique codes (holder, distribution, redemptions) as CSV."""
    client = api.from_environment()
    try:
        written = _download(client, f"/v1/campaigns/{campaign_id}/codes.csv", output)
    except httpx.HTTPError as error:
        api.fail("unreachable", f"{client.url}: {error}")
    typer.echo(f"wrote {written} bytes to {output}", err=True)


def _download(client: api.Api, path: str, output: Path) -> int:
    written = 0
    with (
        client.http.stream("GET", path) as response,
        Progress(*EXPORT_COLUMNS, console=Console(stderr=True)) as progress,
    ):
        if not response.is_success:
            response.read()
            client.check(response)
        task = progress.add_task("export", total=None)
        with output.open("wb") as file:
            for chunk in response.iter_bytes():
                file.write(chunk)
                written += len(chunk)
                progress.update(task, completed=written)
    return written
