"""The sender: takes due runs, decides each (`verdict`), and sends the coupon through the
campaign's decider as a `DistributeCode` whose distribution id is the run's id.

Exactly once per run: a run to send is first marked `sending` (which the frequency caps
count) in the transaction that decided it, then the command goes out with the idempotency
key `automation-run:<id>`, then the outcome is recorded. A crash between those steps leaves
the run `sending`; it is sent again after `STALE_S` with the same key, and the decider
answers with the first outcome (so a command handed to a decider of this host is never
appended to the commands topic as well: `CommandGateway.decide(caller_resends=True)`).
Replicas share the work: runs are claimed with
`FOR UPDATE SKIP LOCKED`, and a contact's runs are decided under an advisory lock on the
contact, so the caps hold when many triggers for one contact arrive at once."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from contracts.commands import DistributeCode
from contracts.envelope import Envelope
from contracts.reasons import Reason
from contracts.replies import Reply
from services.coupons.automations import store
from services.coupons.automations.in_flight import InFlight
from services.coupons.automations.outcomes import Outcome, Outcomes, columns
from services.coupons.automations.seen import Seen
from services.coupons.automations.sources import Route, Sources, sources_for
from services.coupons.automations.verdict import Cap
from services.coupons.bus.gateway import CommandGateway, DecisionPending
from services.coupons.domain.campaign_state import Campaign
from services.coupons.store.woken import run_woken

log = structlog.get_logger(__name__)

BATCH = 1000
"""Runs claimed at most at once."""
RECHECK_S = 1.0
STALE_S = 30.0
"""A run left `sending` this long (its sender crashed or the decider did not answer) is
sent again, with the same idempotency key."""
IN_FLIGHT = 4000
"""Runs handed to the deciders and not yet answered, at most (`in_flight`)."""
CLAIMERS = 2
"""Claims under way at once. A claim of 1,000 is mostly waits on PostgreSQL and the event loop
(1.2-3.5 s each on a loaded machine, 80-100 ms of it CPU): one claimer at a time held the
sender near 400 runs a second (docs/performance/automations.md)."""
ACTOR = "automation"
_NOT_ACTIVE = {Reason.ENDED, Reason.NOT_STARTED, Reason.EXPIRED, Reason.PAUSED}
_COMMAND = Envelope[DistributeCode]
"""Parametrised once: pydantic computes a cache key at every `Envelope[...]`, per run here."""


@dataclass(frozen=True)
class _ToSend:
    run: Any
    route: Route
    email: str | None


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        gateway: CommandGateway,
        campaign: Callable[[str], Campaign | None],
        caught_up: Callable[[], Awaitable[None]],
        cap: Cap,
    ) -> None:
        self._pool = pool
        self._database_url = database_url
        self._gateway = gateway
        self._campaign = campaign
        self._caught_up = caught_up
        self._cap = cap

    async def run(self) -> None:
        """Claim due runs as long as there is room in flight, send each at once, and free its
        place when it is answered: a claim does not wait for the one before it to be
        answered whole, nor for its outcomes to be written (`outcomes`). `CLAIMERS` claims go
        on at once, each woken by the runs' channel, as replicas' would."""
        await self._caught_up()  # until then, every campaign would look unknown
        in_flight = InFlight(IN_FLIGHT)
        outcomes = Outcomes(self._pool)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(outcomes.run())

            async def step() -> bool:
                limit = min(BATCH, await in_flight.room())
                in_flight.take(limit)  # held while claiming: the other claimer sees the rest
                sent = 0
                try:
                    claimed, to_send = await self.claim_due(limit)
                    for each in to_send:
                        tasks.create_task(self._deliver(each, in_flight, outcomes))
                        sent += 1  # each task frees its own place when answered
                finally:
                    in_flight.done(limit - sent)
                return claimed == limit

            for _ in range(CLAIMERS):
                woken = run_woken(
                    self._database_url, store.RUNS_CHANNEL, step, self._seconds_to_next
                )
                tasks.create_task(woken)

    async def _seconds_to_next(self) -> float:
        """Until the next run is due, or a run left `sending` is stale; RECHECK_S at most."""
        async with self._pool.acquire() as conn:
            due = await conn.fetchval(
                """SELECT min(CASE WHEN status = 'scheduled' THEN due_at
                                   ELSE claimed_at + make_interval(secs => $1) END)
                   FROM automation_runs WHERE status IN ('scheduled', 'sending')""",
                STALE_S,
            )
        if due is None:
            return RECHECK_S
        left: float = (due - datetime.now(UTC)).total_seconds()
        return min(RECHECK_S, max(0.0, left))

    async def claim_due(self, limit: int = BATCH) -> tuple[int, list[_ToSend]]:
        """Decide the runs due now (at most `limit`) and mark those to send `sending`: how
        many were claimed, and what to send."""
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT * FROM automation_runs
                   WHERE status = 'scheduled' AND due_at <= $1
                      OR status = 'sending' AND claimed_at < $2
                   ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED""",
                now,
                now - timedelta(seconds=STALE_S),
                limit,
            )
            if not rows:
                return 0, []
            contacts = sorted({r["contact_id"] for r in rows})
            await conn.execute(
                """SELECT pg_advisory_xact_lock(hashtext('automation-contact:' || c))
                   FROM unnest($1::text[]) AS c ORDER BY c""",
                contacts,
            )
            sources = await sources_for(conn, rows, now)
            seen = await Seen.load(conn, contacts, now, self._cap)
            stale = [r for r in rows if r["status"] == "sending"]
            decided = self._decide(seen, sources, [r for r in rows if r not in stale], now)
            decided += [(r, "sending", None, None) for r in stale]  # sent again from now
            ids, statuses, reasons, details = columns(
                [(r["id"], status, reason, detail) for r, status, reason, detail in decided]
            )
            await conn.execute(
                """UPDATE automation_runs AS a SET status = d.status, reason = d.reason,
                       detail = d.detail, claimed_at = $5::timestamptz,
                       decided_at = CASE WHEN d.status = 'sending' THEN NULL
                                         ELSE $5::timestamptz END
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                        AS d(id, status, reason, detail)
                   WHERE a.id = d.id""",
                ids,
                statuses,
                reasons,
                details,
                now,
            )
        counted = Counter(status for _, status, _, _ in decided)
        log.info("automations.decided", claimed=len(rows), resent=len(stale), **counted)
        to_send = [
            _ToSend(r, sources.route(r), seen.email(r["contact_id"]))
            for r, status, _, _ in decided
            if status == "sending"
        ]
        return len(rows), to_send

    async def _deliver(self, each: _ToSend, in_flight: InFlight, outcomes: Outcomes) -> None:
        """Send one run's coupon and queue its outcome; a run the decider did not answer in
        time stays `sending`, and is sent again later with the same key."""
        try:
            outcome = await self._send(each.run, each.route, each.email)
        finally:
            in_flight.done()
        if outcome is not None:
            outcomes.add(outcome)

    def _decide(
        self, seen: Seen, sources: Sources, runs: list[Any], now: datetime
    ) -> list[tuple[Any, str, str | None, str | None]]:
        """Each fresh run's verdict, in due order: (run, status, reason, detail). A run the
        batch decides to send counts towards the caps of the runs after it."""
        decided: list[tuple[Any, str, str | None, str | None]] = []
        for run in runs:
            source = sources.source(run)
            found = seen.judge(source, self._campaign(run["campaign_id"]), run["contact_id"])
            if found.reason is None:
                seen.counts.add(run["source_id"], run["contact_id"], now)
                decided.append((run, "sending", None, None))
            elif found.reason == "held_out":
                decided.append((run, "held_out", None, None))
            else:
                decided.append((run, "refused", found.reason, found.detail))
        return decided

    async def _send(self, run: Any, route: Route, email: str | None) -> Outcome | None:
        """Send one run's coupon; its outcome (id, status, reason, detail), or None when the
        decider did not answer in time (sent again later, with the same key)."""
        command = DistributeCode(
            campaign_id=run["campaign_id"],
            distribution_id=run["id"],
            contact_id=run["contact_id"],
            email=email,
            channel=route.channel,
            source_ref=route.source_ref,
        )
        envelope = _COMMAND(
            key=run["campaign_id"],
            correlation_id=f"{run['source_kind']}-{run['source_id']}",
            idempotency_key=f"automation-run:{run['id']}",
            actor=ACTOR,
            data=command,
        )
        try:
            reply = await self._gateway.decide(envelope, caller_resends=True)
        except DecisionPending:
            return None
        return _outcome(run["id"], reply)


def _outcome(run_id: str, reply: Reply) -> Outcome:
    if reply.outcome == "accepted":
        return (run_id, "sent", None, None)
    if reply.reason == Reason.NO_CODE_AVAILABLE:
        return (run_id, "refused", "no_codes_left", reply.detail)
    if reply.reason in _NOT_ACTIVE or reply.reason == Reason.CAMPAIGN_NOT_FOUND:
        return (run_id, "refused", "campaign_not_active", reply.detail)
    return (run_id, "refused", "not_eligible", f"{reply.reason}: {reply.detail}")
