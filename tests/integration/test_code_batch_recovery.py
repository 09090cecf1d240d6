"""A code batch that died between deciding chunks and recording them (it records a chunk once
the projection holds it, so up to three may be decided and unrecorded) resumes without adding
a chunk twice and without a gap: the decider refuses each new attempt as a reused key, says
where the first attempt's codes are, and the job counts them once they are projected."""

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.coupons.settings import Settings

pytestmark = pytest.mark.integration

COUNT = 60_000  # chunks of 50,000 and 10,000


def wait_for_job(client: httpx.Client, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (batch := client.get(url).json())["status"] == "running":
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    return batch


async def rewind(database_url: str, batch_id: str, next_chunk: int, generated: int) -> None:
    """As if the process died after deciding the chunks from `next_chunk` on, before
    recording them."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """UPDATE code_batches SET status = 'running', finished_at = NULL,
                      next_chunk = $2, generated = $3
               WHERE id = $1""",
            batch_id,
            next_chunk,
            generated,
        )
    finally:
        await conn.close()


async def count(database_url: str, query: str, campaign_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        found: int = await conn.fetchval(query, campaign_id)
        return found
    finally:
        await conn.close()


@pytest.mark.parametrize(("next_chunk", "generated"), [(1, 50_000), (0, 0)])
def test_chunks_decided_before_a_crash_are_counted_not_added_again(
    service: tuple[httpx.Client, Path], settings: Settings, next_chunk: int, generated: int
) -> None:
    client, _ = service
    campaign = client.post(
        "/v1/campaigns",
        json={"name": "Resumed", "discount": {"kind": "percent", "percent_off": "10"}},
    ).json()
    started = client.post(f"/v1/campaigns/{campaign['id']}/code-batches", json={"count": COUNT})
    assert started.status_code == 202, started.text
    url = started.headers["location"]
    assert wait_for_job(client, url)["generated"] == COUNT

    asyncio.run(rewind(settings.database_url, started.json()["id"], next_chunk, generated))
    resumed = wait_for_job(client, url)

    assert resumed["status"] == "done" and resumed["generated"] == COUNT
    exported = client.get(f"/v1/campaigns/{campaign['id']}/codes.csv").text.splitlines()[1:]
    assert len(exported) == len(set(exported)) == COUNT
    claims = "SELECT count(*) FROM code_claims WHERE campaign_id = $1"
    claimed = asyncio.run(count(settings.database_url, claims, campaign["id"]))
    assert claimed > COUNT, "the resumed job tried again the chunks it had not recorded"
