"""Runs bulk code generation jobs, in chunks, resumably, one replica per job.

For each chunk: generate codes (domain.codes), claim them in the global code registry (a code
another campaign has is dropped and made up for in the next chunk), then append them through
the campaign's decider as `AddCodes` with the idempotency key `<batch>:<chunk>`, and, once the
`campaigns` projection holds the chunk, record the next chunk. After a crash the job resumes
at its recorded chunk; a chunk that had in fact been decided is refused as a reused key, the
refusal saying where the first attempt's events are, and the job counts its codes once the
projection holds them. Codes claimed by an attempt that never reached the log stay claimed,
unused: harmless.

The stages overlap: the next chunk is generated and claimed while this one is decided, and
the projection may be up to `AHEAD` chunks behind the decider. The job is done only once the
projection holds every chunk, so its codes can be listed, exported and redeemed."""

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from contracts.commands import MAX_CHUNK_CODES, AddCodes
from contracts.envelope import Envelope
from contracts.reasons import Reason
from contracts.replies import EventPosition, Reply
from contracts.rules import CodePattern
from projections import campaigns
from projections.watermarks import Watermarks
from services.coupons.bus.gateway import CommandGateway
from services.coupons.domain.codes import generate, normal_form
from services.coupons.store import code_batches

log = structlog.get_logger(__name__)

CHUNK_BYTES = 900_000
"""A chunk's codes, as JSON, fit in one Kafka message (1 MiB by default) with its envelope."""
AHEAD = 2
"""Chunks the decider may be ahead of the projection: enough to keep both busy, few enough
that the last wait is short."""
IDLE_S = 0.5


def chunk_size(pattern: CodePattern) -> int:
    """Codes per chunk: as many as fit in `CHUNK_BYTES` (a quoted code and a comma each)."""
    code_length = len(normal_form(pattern).prefix) + pattern.length
    return min(MAX_CHUNK_CODES, CHUNK_BYTES // (code_length + 3))


@dataclass(frozen=True)
class _Decided:
    """A chunk the decider took: the job's progress, once the projection holds its events."""

    next_chunk: int
    made: int
    events: tuple[EventPosition, ...]


class CodeBatchRunner:
    def __init__(
        self, pool: asyncpg.Pool, gateway: CommandGateway, watermarks: Watermarks, timeout_s: float
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._watermarks = watermarks
        self._timeout_s = timeout_s

    async def run(self) -> None:
        while True:
            async with self._pool.acquire() as conn:
                jobs = await code_batches.running(conn)
            for job in jobs:
                await self._run_if_free(job)
            await asyncio.sleep(IDLE_S)

    async def _run_if_free(self, job: dict[str, Any]) -> None:
        """Run `job` unless another replica holds its advisory lock."""
        async with self._pool.acquire() as lock:
            if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", job["id"]):
                return
            try:
                await self._complete(job)
            finally:
                await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", job["id"])

    async def _complete(self, job: dict[str, Any]) -> None:
        batch_id, requested = job["id"], job["requested"]
        size = chunk_size(job["pattern"])
        chunk, made = job["next_chunk"], job["generated"]
        structlog.contextvars.bind_contextvars(correlation_id=f"batch-{batch_id}")
        decided: deque[_Decided] = deque()  # not yet known to be projected, nor recorded
        claiming: asyncio.Task[list[str]] | None = None
        try:
            while made < requested:
                if claiming is None:
                    claiming = self._claim_soon(job, min(size, requested - made))
                claimed = (await claiming)[: requested - made]
                ahead = requested - made - len(claimed)  # if this chunk is accepted
                claiming = self._claim_soon(job, min(size, ahead)) if ahead > 0 else None
                events: tuple[EventPosition, ...] = ()
                if claimed:
                    reply = await self._append(job, chunk, claimed)
                    events = reply.events
                    if reply.outcome == "accepted":
                        made += len(claimed)  # claimed codes are new to every campaign
                    elif reply.reason == Reason.IDEMPOTENCY_KEY_REUSED:  # decided before a crash
                        made = await self._recount(job, decided, events) if events else made
                    else:
                        await self._finish(batch_id, error=str(reply.reason))
                        log.warning("code_batch.failed", batch=batch_id, reason=reply.reason)
                        return
                chunk += 1
                decided.append(_Decided(chunk, made, events))
                while len(decided) > AHEAD:
                    await self._record(batch_id, decided.popleft())
            while decided:
                await self._record(batch_id, decided.popleft())
        finally:
            if claiming is not None:
                claiming.cancel()
        async with self._pool.acquire() as conn:
            await code_batches.analyse_codes(conn)
        await self._finish(batch_id)
        log.info("code_batch.done", batch=batch_id, codes=made)

    def _claim_soon(self, job: dict[str, Any], count: int) -> asyncio.Task[list[str]]:
        """Generate and claim `count` codes, in the background."""
        return asyncio.create_task(self._claim(job, count))

    async def _claim(self, job: dict[str, Any], count: int) -> list[str]:
        candidates = list(generate(normal_form(job["pattern"]), count))
        async with self._pool.acquire() as conn:
            return await code_batches.claim_all(conn, candidates, job["campaign_id"])

    async def _append(self, job: dict[str, Any], chunk: int, codes: list[str]) -> Reply:
        command = AddCodes(
            campaign_id=job["campaign_id"], batch_id=job["id"], chunk=chunk, codes=tuple(codes)
        )
        envelope = Envelope[AddCodes](
            key=job["campaign_id"],
            correlation_id=f"batch-{job['id']}",
            idempotency_key=f"{job['id']}:{chunk}",
            actor=job["actor"],
            data=command,
        )
        return await self._gateway.decide(envelope)

    async def _recount(
        self, job: dict[str, Any], decided: deque[_Decided], events: tuple[EventPosition, ...]
    ) -> int:
        """The batch's codes in the read model, once it holds every chunk decided so far (up to
        the one whose `events` a refusal as a reused key pointed at)."""
        while decided:
            await self._record(job["id"], decided.popleft())
        await self._projected(events)
        async with self._pool.acquire() as conn:
            return await code_batches.recount(conn, job["campaign_id"], job["id"])

    async def _record(self, batch_id: str, chunk: _Decided) -> None:
        """Record a decided chunk as the job's progress, once the projection holds it."""
        await self._projected(chunk.events)
        async with self._pool.acquire() as conn:
            await code_batches.advance(conn, batch_id, chunk.next_chunk, chunk.made)

    async def _projected(self, events: tuple[EventPosition, ...]) -> None:
        for position in events:
            await self._watermarks.wait(
                campaigns.NAME, position.partition, position.offset, self._timeout_s
            )

    async def _finish(self, batch_id: str, error: str | None = None) -> None:
        async with self._pool.acquire() as conn:
            await code_batches.finish(conn, batch_id, error)
