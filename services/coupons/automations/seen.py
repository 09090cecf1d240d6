"""What the send step knows of a batch's contacts when it judges their runs: profiles,
segment memberships and the coupons already sent, loaded in one query; and the verdict
for one run. Shared by the sender and the dry run."""

from collections import Counter
from datetime import datetime, timedelta

from projections.db import Connection
from services.coupons.automations.automation import held_out
from services.coupons.automations.verdict import Cap, Sent, Source, Verdict, verdict
from services.coupons.contacts.profile import Profile, evaluation_data
from services.coupons.contacts.store import from_json
from services.coupons.domain.campaign_state import Campaign

_LOAD = """
SELECT 'profile' AS kind, contact_id, profile::text AS text,
       NULL::bigint AS n, NULL::timestamptz AS last, NULL::bigint AS recent
FROM contact_profiles WHERE contact_id = ANY($1::text[])
UNION ALL
SELECT 'member', contact_id, segment_id, NULL, NULL, NULL
FROM segment_members WHERE contact_id = ANY($1::text[])
UNION ALL
SELECT 'sent', contact_id, source_id, count(*), max(claimed_at),
       count(*) FILTER (WHERE claimed_at >= $2)
FROM automation_runs
WHERE contact_id = ANY($1::text[]) AND status IN ('sending', 'sent')
GROUP BY source_id, contact_id"""
"""What `Seen.load` reads, a row each: a profile (its JSON), a membership (the segment id),
or the coupons sent from one source (the source id, how many, the last one's time, how many
since the global cap's window began)."""


class SendCounts:
    """The coupons sent (or being sent) to some contacts: per source and contact, how many
    and the last one's time; per contact, how many since the global cap's window began."""

    def __init__(self, since: datetime) -> None:
        self._since = since
        self._by_source: dict[tuple[str, str], tuple[int, datetime | None]] = {}
        self._recent: Counter[str] = Counter()

    def count(
        self, source_id: str, contact_id: str, n: int, last: datetime | None, recent: int
    ) -> None:
        """As stored: `n` sent from `source_id`, the last at `last`, `recent` since the
        window began."""
        self._by_source[(source_id, contact_id)] = (n, last)
        self._recent[contact_id] += recent

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
        """Profiles, memberships and the coupons sent of `contacts`, in one round trip (the
        sender's claim waits on each: 3-4 ms under load)."""
        since = now - timedelta(seconds=cap.window_s)
        profiles: dict[str, Profile] = {}
        members: dict[str, set[str]] = {}
        counts = SendCounts(since)
        for r in await conn.fetch(_LOAD, sorted(set(contacts)), since):
            contact = r["contact_id"]
            if r["kind"] == "profile":
                profiles[contact] = from_json(contact, r["text"])
            elif r["kind"] == "member":
                members.setdefault(contact, set()).add(r["text"])
            else:
                counts.count(r["text"], contact, r["n"], r["last"], r["recent"])
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
