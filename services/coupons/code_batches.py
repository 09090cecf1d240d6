"""Runs bulk code generation jobs, in chunks, resumably, one replica per job.

For each chunk: generate codes (domain.codes), claim them in the global code registry (a code
another campaign has is dropped and made up for in the next chunk), then append them through
the campaign's decider as `AddCodes` with the idempotency key `<batch>:<chunk>`, and record
the next chunk. After a crash the job resumes at its recorded chunk; if that chunk had in
fact been decided, the decider refuses the new attempt as a reused key and the job moves on.
Codes claimed by an attempt that never reached the log stay claimed, unused: harmless."""

import asyncio
from typing import Any

import asyncpg
import structlog

from contracts.commands import AddCodes
from contracts.envelope import Envelope
from contracts.reasons import Reason
from projections import campaigns, code_batches
from projections.watermarks import Watermarks
from services.coupons.bus.gateway import CommandGateway
from services.coupons.domain.codes import generate, normalise

log = structlog.get_logger(__name__)

CHUNK = 20_000
IDLE_S = 0.5


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
        batch_id, campaign_id = job["id"], job["campaign_id"]
        chunk, made = job["next_chunk"], job["generated"]
        structlog.contextvars.bind_contextvars(correlation_id=f"batch-{batch_id}")
        while made < job["requested"]:
            wanted = min(CHUNK, job["requested"] - made)
            candidates = [normalise(c) for c in generate(job["pattern"], wanted)]
            async with self._pool.acquire() as conn:
                claimed = await code_batches.claim_all(conn, candidates, campaign_id)
            if claimed:
                refusal = await self._append(job, chunk, claimed)
                if refusal is None:
                    made += len(claimed)  # claimed codes are new to every campaign
                elif refusal == Reason.IDEMPOTENCY_KEY_REUSED:  # decided before a crash
                    async with self._pool.acquire() as conn:
                        made = await code_batches.recount(conn, batch_id)
                else:
                    async with self._pool.acquire() as conn:
                        await code_batches.finish(conn, batch_id, error=refusal)
                    log.warning("code_batch.failed", batch=batch_id, reason=refusal)
                    return
            chunk += 1
            async with self._pool.acquire() as conn:
                await code_batches.advance(conn, batch_id, chunk, made)
        async with self._pool.acquire() as conn:
            await code_batches.finish(conn, batch_id)
        log.info("code_batch.done", batch=batch_id, codes=made)

    async def _append(self, job: dict[str, Any], chunk: int, codes: list[str]) -> str | None:
        """Append one chunk and wait until it is readable; the refusal's reason, if any."""
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
        reply = await self._gateway.decide(envelope)
        if reply.outcome == "rejected":
            return str(reply.reason)
        for position in reply.events:
            await self._watermarks.wait(
                campaigns.NAME, position.partition, position.offset, self._timeout_s
            )
        return None
