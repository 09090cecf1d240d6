"""Mirror a campaign to Stripe: one Coupon, and one PromotionCode per code of ours, so that
Stripe Checkout honours our codes (and the webhooks of what it charged come back attributed).

A job runs in the background, one replica per job (advisory lock), rate-limited by a token
bucket (STRIPE_RATE_LIMIT requests/s; Stripe allows 25 in test mode, 100 live). Every Stripe
object carries our ids in metadata and is created with a Stripe idempotency key derived from
them; each mirrored code is recorded in `stripe_code_map` with the job's progress in one
transaction, so a job resumes after a crash and never creates a code twice.
"""

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import stripe
import structlog

from projections import campaigns
from projections.db import Connection
from services.coupons.stripe.attribution import CAMPAIGN_KEY, CODE_KEY

log = structlog.get_logger(__name__)

IDLE_S = 0.5
PAGE = 1000


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts of at most `rate`."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self._rate)


def coupon_params(campaign: dict[str, Any]) -> dict[str, Any]:
    """Stripe's Coupon for a campaign (as `projections.campaigns.get` reads it): its
    discount, duration, expiry and total limit."""
    discount, rules = campaign["discount"], campaign
    params: dict[str, Any] = {
        "id": f"growthos-{campaign['id']}",
        "name": campaign["name"][:40],
        "duration": rules["duration"]["kind"],
        "metadata": {CAMPAIGN_KEY: campaign["id"]},
    }
    if discount["kind"] == "percent":
        params["percent_off"] = discount["percent_off"]
    else:
        params |= {"amount_off": discount["amount_off"], "currency": discount["currency"].lower()}
    if rules["duration"]["kind"] == "repeating":
        params["duration_in_months"] = rules["duration"]["months"]
    if expires := rules["validity"].get("expires_at"):
        params["redeem_by"] = int(_timestamp(expires))
    if limit := rules["limits"].get("max_redemptions"):
        params["max_redemptions"] = limit
    return params


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def create_job(
    conn: Connection, job_id: str, campaign: dict[str, Any], actor: str | None
) -> dict[str, Any]:
    """A job for the campaign, or the one already running for it."""
    total = int(campaign["code"] is not None) + await conn.fetchval(
        "SELECT count(*) FROM codes WHERE campaign_id = $1", campaign["id"]
    )
    await conn.execute(
        """INSERT INTO stripe_mirror_jobs (id, campaign_id, total, actor)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        job_id,
        campaign["id"],
        total,
        actor,
    )
    row = await conn.fetchrow(
        """SELECT * FROM stripe_mirror_jobs WHERE id = $1
           OR (campaign_id = $2 AND status = 'running') ORDER BY id = $1 LIMIT 1""",
        job_id,
        campaign["id"],
    )
    assert row is not None
    return dict(row)


async def get_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM stripe_mirror_jobs WHERE id = $1", job_id)
    return None if row is None else dict(row)


class MirrorRunner:
    def __init__(self, pool: asyncpg.Pool, client: stripe.StripeClient, rate: float) -> None:
        self._pool = pool
        self._client = client
        self._bucket = TokenBucket(rate)

    async def run(self) -> None:
        while True:
            async with self._pool.acquire() as conn:
                jobs = await conn.fetch(
                    "SELECT * FROM stripe_mirror_jobs WHERE status = 'running' ORDER BY created_at"
                )
            for job in jobs:
                async with self._pool.acquire() as lock:
                    key = f"stripe-mirror:{job['id']}"
                    if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
                        continue
                    try:
                        await self._complete(dict(job))
                    finally:
                        await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
            await asyncio.sleep(IDLE_S)

    async def _complete(self, job: dict[str, Any]) -> None:
        async with self._pool.acquire() as conn:
            campaign = await campaigns.get(conn, job["campaign_id"])
        try:
            if campaign is None:
                raise ValueError("campaign_not_found")
            coupon_id = job["coupon_id"] or await self._coupon(job, campaign)
            async with self._pool.acquire() as conn:  # resuming: count what is there
                await conn.execute(
                    """UPDATE stripe_mirror_jobs SET mirrored = (SELECT count(*)
                           FROM stripe_code_map WHERE campaign_id = $2 AND code IS NOT NULL)
                       WHERE id = $1""",
                    job["id"],
                    job["campaign_id"],
                )
            async for code in self._unmirrored(campaign):
                await self._promotion_code(job, coupon_id, code)
        except (stripe.StripeError, ValueError) as error:
            reason = getattr(error, "code", None) or str(error)
            async with self._pool.acquire() as conn:
                await conn.execute(
                    """UPDATE stripe_mirror_jobs SET status = 'failed', error = $2,
                           finished_at = now() WHERE id = $1""",
                    job["id"],
                    str(reason)[:500],
                )
            log.warning("stripe.mirror_failed", job=job["id"], reason=reason)
            return
        async with self._pool.acquire() as conn:
            await conn.execute(
                """UPDATE stripe_mirror_jobs SET status = 'done', finished_at = now()
                   WHERE id = $1""",
                job["id"],
            )
        log.info("stripe.mirror_done", job=job["id"], campaign=job["campaign_id"])

    async def _coupon(self, job: dict[str, Any], campaign: dict[str, Any]) -> str:
        params = coupon_params(campaign)
        await self._bucket.take()
        try:
            coupon = await self._client.v1.coupons.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"growthos-coupon-{campaign['id']}"},
            )
            coupon_id = coupon.id
        except stripe.InvalidRequestError as error:
            if error.code != "resource_already_exists":
                raise
            coupon_id = params["id"]  # created by an earlier attempt
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO stripe_code_map (stripe_id, campaign_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                coupon_id,
                campaign["id"],
            )
            await conn.execute(
                "UPDATE stripe_mirror_jobs SET coupon_id = $2 WHERE id = $1", job["id"], coupon_id
            )
        return str(coupon_id)

    async def _unmirrored(self, campaign: dict[str, Any]) -> Any:
        """The campaign's codes not yet in Stripe: its shared code, then its unique codes."""
        async with self._pool.acquire() as conn:
            done = await conn.fetchval(
                "SELECT 1 FROM stripe_code_map WHERE campaign_id = $1 AND code = $2",
                campaign["id"],
                campaign["code"],
            )
        if campaign["code"] and not done:
            yield campaign["code"]
        after = ""
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT c.code FROM codes c WHERE c.campaign_id = $1 AND c.code > $2
                         AND NOT EXISTS (SELECT 1 FROM stripe_code_map m
                                         WHERE m.campaign_id = c.campaign_id AND m.code = c.code)
                       ORDER BY c.code LIMIT $3""",
                    campaign["id"],
                    after,
                    PAGE,
                )
            if not rows:
                return
            for row in rows:
                yield row["code"]
            after = rows[-1]["code"]

    async def _promotion_code(self, job: dict[str, Any], coupon_id: str, code: str) -> None:
        await self._bucket.take()
        params: Any = {
            "promotion": {"type": "coupon", "coupon": coupon_id},
            "code": code,
            "metadata": {CAMPAIGN_KEY: job["campaign_id"], CODE_KEY: code},
        }
        promotion = await self._client.v1.promotion_codes.create_async(
            params, {"idempotency_key": f"growthos-promo-{job['campaign_id']}-{code}"}
        )
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO stripe_code_map (stripe_id, campaign_id, code) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                promotion.id,
                job["campaign_id"],
                code,
            )
            await conn.execute(
                "UPDATE stripe_mirror_jobs SET mirrored = mirrored + 1 WHERE id = $1", job["id"]
            )
