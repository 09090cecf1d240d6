"""What the send step knows of a batch's contacts when it judges their runs: profiles,
segment memberships and the coupons already sent, loaded in three queries; and the verdict
for one run. Shared by the sender and the dry run."""

from collections import Counter
from datetime import datetime, timedelta

from projections.db import Connection
from services.coupons.automations.automation import held_out
from services.coupons.automations.verdict import Cap, Sent, Source, Verdict, verdict
from services.coupons.contacts.profile import Profile, evaluation_data
from services.coupons.contacts.store import from_json
from services.coupons.domain.campaign_state import Campaign


class SendCounts:
    """The coupons sent (or being sent) to some contacts: per source and contact, how many
    and the last one's time; per contact, how many since the global cap's window began."""

    def __init__(self, since: datetime) -> None:
        self._since = since
        self._by_source: dict[tuple[str, str], tuple[int, datetime | None]] = {}
        self._recent: Counter[str] = Counter()

    @classmethod
    async def load(cls, conn: Connection, contacts: list[str], since: datetime) -> "SendCounts":
        counts = cls(since)
        for r in await conn.fetch(
            """SELECT source_id, contact_id, count(*) AS n, max(claimed_at) AS last,
                      count(*) FILTER (WHERE claimed_at >= $2) AS recent
               FROM automation_runs
               WHERE contact_id = ANY($1::text[]) AND status IN ('sending', 'sent')
               GROUP BY source_id, contact_id""",
            contacts,
            since,
        ):
            counts._by_source[(r["source_id"], r["contact_id"])] = (r["n"], r["last"])
            counts._recent[r["contact_id"]] += r["recent"]
        return counts

    def of(self, source_id: str, contact_id: str) -> Sent:
        n, last = self._by_source.get((source_id, contact_id), (0, None))
        return Sent(n, last, self._recent[contact_id])

    def add(self, source_id: str, contact_id: str, at: datetime) -> None:
        n, _ = self._by_source.get((source_id, contact_id), (0, None))
        self._by_source[(source_id, contact_id)] = (n + 1, at)
        if at >= self._since:
            self._recent[contact_id] += 1


class Seen:
    def __init__(
        self,
        profiles: dict[str, Profile],
        members: dict[str, set[str]],
        counts: SendCounts,
        cap: Cap,
        now: datetime,
    ) -> None:
        self.profiles, self.members, self.counts = profiles, members, counts
        self._cap, self._now = cap, now

    @classmethod
    async def load(cls, conn: Connection, contacts: list[str], now: datetime, cap: Cap) -> "Seen":
        ids = sorted(set(contacts))
        profiles = {
            r["contact_id"]: from_json(r["contact_id"], r["profile"])
            for r in await conn.fetch(
                """SELECT contact_id, profile::text FROM contact_profiles
                   WHERE contact_id = ANY($1::text[])""",
                ids,
            )
        }
        members: dict[str, set[str]] = {}
        for m in await conn.fetch(
            """SELECT contact_id, segment_id FROM segment_members
               WHERE contact_id = ANY($1::text[])""",
            ids,
        ):
            members.setdefault(m["contact_id"], set()).add(m["segment_id"])
        counts = await SendCounts.load(conn, ids, now - timedelta(seconds=cap.window_s))
        return cls(profiles, members, counts, cap, now)

    def email(self, contact_id: str) -> str | None:
        """The contact's address, if its profile has one (the coupon's email goes there)."""
        profile = self.profiles.get(contact_id)
        return None if profile is None else profile.email

    def judge(self, source: Source, campaign: Campaign | None, contact_id: str) -> Verdict:
        profile = self.profiles.get(contact_id) or from_json(contact_id, None)
        return verdict(
            source,
            campaign,
            evaluation_data(profile, int(self._now.timestamp())),
            frozenset(self.members.get(contact_id, ())),
            self.counts.of(source.id, contact_id),
            self._cap,
            held_out(source.id, contact_id, source.holdout_percent),
            self._now,
        )
