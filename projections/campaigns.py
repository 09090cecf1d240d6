"""The campaigns read model (projection "campaigns"): campaigns with their rules, status and
usage, and the redemption ledger. What the campaign, validation and redemption APIs read."""

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.envelope import Envelope
from contracts.events import (
    CampaignDefined,
    CampaignStatusChanged,
    CampaignUpdated,
    CodeDistributed,
    CodeRedeemed,
    CodesAdded,
    CodesLow,
    CommandRejected,
    Event,
    RedemptionRefunded,
    RedemptionReversed,
)
from projections.db import Connection

NAME = "campaigns"
RULES = ("duration", "validity", "limits", "eligibility")


@dataclass
class _Usage:
    """What a batch adds to one campaign's counters, and its latest event's time."""

    at: Any
    redemptions: int = 0
    spent: int = 0
    distributed: int = 0


@dataclass
class _Batch:
    """What a batch adds up to, written at its end in a few statements: rows are inserted
    before the updates that read them (a reversal of a redemption in the same batch)."""

    defined: list[tuple[Any, ...]] = field(default_factory=list)
    redemptions: list[tuple[Any, ...]] = field(default_factory=list)
    distributions: list[tuple[Any, ...]] = field(default_factory=list)
    reversals: dict[str, tuple[Any, str]] = field(default_factory=dict)  # id -> (at, reason)
    reversed_times: Counter[str] = field(default_factory=Counter)  # id -> reversals of it
    campaigns: dict[str, _Usage] = field(default_factory=dict)
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)  # -> redemptions added
    contacts: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)  # first holder

    def count(
        self, campaign_id: str, at: Any, redemptions: int = 0, spent: int = 0, distributed: int = 0
    ) -> None:
        usage = self.campaigns.setdefault(campaign_id, _Usage(at))
        usage.redemptions += redemptions
        usage.spent += spent
        usage.distributed += distributed
        usage.at = max(usage.at, at)

    async def write_defined(self, conn: Connection) -> None:
        """The campaigns defined so far, before anything that updates them."""
        if self.defined:
            await conn.execute(
                """INSERT INTO campaigns (id, name, discount, code, status, rules, defined_at,
                                          defined_by, correlation_id, event_id)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[],
                                        $5::text[], $6::jsonb[], $7::timestamptz[], $8::text[],
                                        $9::text[], $10::uuid[])
                   ON CONFLICT (id) DO NOTHING""",
                *zip(*self.defined, strict=True),
            )
            self.defined.clear()

    async def write(self, conn: Connection) -> None:
        await self.write_defined(conn)
        if self.redemptions:
            await conn.execute(
                """INSERT INTO redemptions (redemption_id, campaign_id, code, contact_id, order_ref,
                       currency, amount, discount, total, redeemed_at, correlation_id)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                        $6::text[], $7::bigint[], $8::bigint[], $9::bigint[],
                                        $10::timestamptz[], $11::text[])""",
                *zip(*self.redemptions, strict=True),
            )
        if self.distributions:
            await conn.execute(
                """INSERT INTO distributions (distribution_id, campaign_id, code, contact_id, email,
                       channel, source_ref, expires_at, distributed_at)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                        $6::text[], $7::text[], $8::timestamptz[],
                                        $9::timestamptz[])""",
                *zip(*self.distributions, strict=True),
            )
        if self.contacts:
            await conn.execute(
                """UPDATE codes c SET contact_id = h.contact_id, distributed_at = h.at
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                        AS h(campaign_id, code, contact_id, at)
                   WHERE c.campaign_id = h.campaign_id AND c.code = h.code
                     AND c.contact_id IS NULL""",
                *zip(*self.contacts, strict=True),
                *zip(*self.contacts.values(), strict=True),
            )
        if self.reversals:
            await self._reverse(conn)
        if self.campaigns:
            await conn.execute(
                """UPDATE campaigns c SET redemptions = c.redemptions + d.redemptions,
                                          budget_spent = c.budget_spent + d.spent,
                                          distributed = c.distributed + d.distributed,
                                          updated_at = greatest(c.updated_at, d.at)
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                               $5::timestamptz[]) AS d(id, redemptions, spent, distributed, at)
                   WHERE c.id = d.id""",
                list(self.campaigns),
                *zip(
                    *(
                        (u.redemptions, u.spent, u.distributed, u.at)
                        for u in self.campaigns.values()
                    ),
                    strict=True,
                ),
            )
        if changed := [(*key, n) for key, n in self.codes.items() if n]:
            await conn.execute(
                """UPDATE codes c SET redemptions = c.redemptions + d.n
                   FROM unnest($1::text[], $2::text[], $3::int[]) AS d(campaign_id, code, n)
                   WHERE c.campaign_id = d.campaign_id AND c.code = d.code""",
                *zip(*changed, strict=True),
            )

    async def _reverse(self, conn: Connection) -> None:
        """Mark the reversed redemptions, and count each reversal off its redemption's code."""
        marked = await conn.fetch(
            """UPDATE redemptions r SET reversed_at = v.at, reversal_reason = v.reason
               FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS v(id, at, reason)
               WHERE r.redemption_id = v.id
               RETURNING r.redemption_id, r.campaign_id, r.code""",
            list(self.reversals),
            [at for at, _ in self.reversals.values()],
            [reason for _, reason in self.reversals.values()],
        )
        for row in marked:
            key = (row["campaign_id"], row["code"])
            self.codes[key] -= self.reversed_times[row["redemption_id"]]


async def apply(conn: Connection, envelopes: Sequence[Envelope[Event]]) -> None:
    """Apply a batch in order. Updates, status changes and added codes are written as they come
    (they are rare); everything else is collected and written once at the end of the batch, a
    statement per kind, definitions first (and before an update of one of them)."""
    if not envelopes:
        return
    await conn.execute(
        """INSERT INTO campaign_audit
               (event_id, campaign_id, type, actor, occurred_at, correlation_id, detail)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                $5::timestamptz[], $6::text[], $7::jsonb[])
           ON CONFLICT (event_id) DO NOTHING""",
        *zip(
            *(
                (
                    e.id,
                    e.key,
                    e.type,
                    e.actor,
                    e.occurred_at,
                    e.correlation_id,
                    _audit_detail(e.data),
                )
                for e in envelopes
            ),
            strict=True,
        ),
    )
    batch = _Batch()
    for envelope in envelopes:
        await _apply_one(conn, envelope, batch)
    await batch.write(conn)


async def _apply_one(conn: Connection, envelope: Envelope[Event], batch: _Batch) -> None:
    at = envelope.occurred_at
    match envelope.data:
        case CampaignDefined() as event:
            rules = event.model_dump(mode="json", include=set(RULES))
            batch.defined.append(
                (
                    event.campaign_id,
                    event.name,
                    event.discount.model_dump_json(),
                    event.code,
                    event.status,
                    json.dumps(rules),
                    at,
                    envelope.actor,
                    envelope.correlation_id,
                    envelope.id,
                )
            )
        case CampaignUpdated() as event:
            await batch.write_defined(conn)  # it may be in this batch
            rules = event.model_dump(mode="json", include=set(RULES), exclude_none=True)
            await conn.execute(
                """UPDATE campaigns SET name = coalesce($2, name), rules = rules || $3::jsonb,
                                        updated_at = $4
                   WHERE id = $1""",
                event.campaign_id,
                event.name,
                json.dumps(rules),
                at,
            )
        case CampaignStatusChanged() as event:
            await batch.write_defined(conn)
            await conn.execute(
                "UPDATE campaigns SET status = $2, updated_at = $3 WHERE id = $1",
                event.campaign_id,
                event.status,
                at,
            )
        case CodeRedeemed() as event:
            batch.redemptions.append(
                (
                    event.redemption_id,
                    event.campaign_id,
                    event.code,
                    event.contact_id,
                    event.order_ref,
                    event.currency,
                    event.amount,
                    event.discount,
                    event.total,
                    at,
                    envelope.correlation_id,
                )
            )
            batch.count(event.campaign_id, at, redemptions=1, spent=event.discount)
            batch.codes[event.campaign_id, event.code] += 1
        case RedemptionReversed() as event:
            batch.reversals[event.redemption_id] = (at, event.reason)
            batch.reversed_times[event.redemption_id] += 1
            batch.count(event.campaign_id, at, redemptions=-1, spent=-event.discount)
        case CodeDistributed() as event:
            batch.distributions.append(
                (
                    event.distribution_id,
                    event.campaign_id,
                    event.code,
                    event.contact_id,
                    event.email,
                    event.channel,
                    event.source_ref,
                    event.expires_at,
                    at,
                )
            )
            batch.contacts.setdefault((event.campaign_id, event.code), (event.contact_id, at))
            batch.count(event.campaign_id, at, distributed=1)
        case CodesAdded() as event:
            # one array rather than a record per code; in key order: the indexes take it fastest
            await conn.execute(
                """INSERT INTO codes (code, campaign_id, batch_id, chunk)
                   SELECT unnest($1::text[]), $2, $3, $4""",
                sorted(event.codes),
                event.campaign_id,
                event.batch_id,
                event.chunk,
            )
        case CommandRejected() | RedemptionRefunded() | CodesLow():
            pass


def _audit_detail(event: Event) -> str:
    """The event without its type and campaign; codes added are counted, not listed (a batch
    of a million codes would otherwise put a million codes in the audit trail)."""
    if isinstance(event, CodesAdded):
        return json.dumps(
            {"batch_id": event.batch_id, "chunk": event.chunk, "codes": len(event.codes)}
        )
    return event.model_dump_json(exclude={"type", "campaign_id"})


CAMPAIGN_COLUMNS = (
    "id, name, discount, code, status, rules, distributed, redemptions, budget_spent, defined_at,"
    " defined_by"
)
REDEMPTION_COLUMNS = (
    "redemption_id, campaign_id, code, contact_id, order_ref, currency, amount, discount, total,"
    " redeemed_at, reversed_at, reversal_reason"
)


def _campaign(record: Any) -> dict[str, Any]:
    row = dict(record)
    row["discount"] = json.loads(row["discount"])
    row.update(json.loads(row.pop("rules")))
    row["usage"] = {
        "distributed": row.pop("distributed"),
        "redemptions": row.pop("redemptions"),
        "budget_spent": row.pop("budget_spent"),
    }
    return row


async def get(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1", campaign_id
    )
    return None if record is None else _campaign(record)


async def page(conn: Connection, limit: int, after: tuple[Any, str] | None) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by (defined_at, id)."""
    if after is None:
        records = await conn.fetch(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY defined_at DESC, id DESC LIMIT $1",
            limit,
        )
    else:
        records = await conn.fetch(
            f"""SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE (defined_at, id) < ($2, $3)
                ORDER BY defined_at DESC, id DESC LIMIT $1""",
            limit,
            *after,
        )
    return [_campaign(r) for r in records]


async def redemption(conn: Connection, redemption_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        f"SELECT {REDEMPTION_COLUMNS} FROM redemptions WHERE redemption_id = $1", redemption_id
    )
    return None if record is None else dict(record)


async def audit(conn: Connection, campaign_id: str) -> list[dict[str, Any]]:
    records = await conn.fetch(
        """SELECT event_id::text, type, actor, occurred_at, correlation_id, detail
           FROM campaign_audit WHERE campaign_id = $1 ORDER BY occurred_at, event_id""",
        campaign_id,
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in records]


async def distribution(conn: Connection, distribution_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        """SELECT distribution_id, campaign_id, code, contact_id, email, channel, source_ref,
                  expires_at, distributed_at
           FROM distributions WHERE distribution_id = $1""",
        distribution_id,
    )
    return None if record is None else dict(record)


CODE_COLUMNS = "code, contact_id, distributed_at, redemptions, batch_id"


async def codes_page(
    conn: Connection, campaign_id: str, limit: int, after: str | None
) -> list[dict[str, Any]]:
    records = await conn.fetch(
        f"""SELECT {CODE_COLUMNS} FROM codes WHERE campaign_id = $1 AND code > $2
            ORDER BY code LIMIT $3""",
        campaign_id,
        after or "",
        limit,
    )
    return [dict(r) for r in records]
