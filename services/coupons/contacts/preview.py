"""Preview: how many contacts a condition matches now, and a sample, without defining a
segment. Evaluated in PostgreSQL (contacts/condition_sql.py): one COUNT over the profiles and
a 20-row sample; rows (or whole conditions) outside the SQL subset are read page by page and
evaluated in Python. All in one read-only snapshot, at one `now`."""

from dataclasses import dataclass

from projections.db import Connection
from services.coupons.contacts import store
from services.coupons.contacts.condition_sql import translate
from services.coupons.contacts.conditions import Condition
from services.coupons.contacts.profile import evaluation_data

SAMPLE = 20
PAGE = 5000


@dataclass(frozen=True)
class Previewed:
    matched: int
    sample: list[str]
    """The first SAMPLE matching contact ids, in id order."""
    at: int
    in_python: int
    """Profiles evaluated in Python (outside the SQL subset)."""


async def preview(conn: Connection, condition: Condition, now: int) -> Previewed:
    sql = translate(condition.tree, now)
    rows = f"contact_profiles p{sql.lateral}"
    matched, unknown, sample = 0, -1, []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if sql.translated:
            counted = await conn.fetchrow(
                f"""SELECT count(*) FILTER (WHERE v) AS yes, count(*) FILTER (WHERE v IS NULL)
                    AS unknown FROM (SELECT ({sql.inside}) AS v FROM {rows}) s""",
                *sql.params,
            )
            assert counted is not None  # an aggregate always answers one row
            matched, unknown = counted["yes"], counted["unknown"]
            if matched:
                sample = [
                    r["contact_id"]
                    for r in await conn.fetch(
                        f"""SELECT p.contact_id FROM {rows} WHERE ({sql.inside})
                            ORDER BY p.contact_id LIMIT {SAMPLE}""",
                        *sql.params,
                    )
                ]
        in_python = 0
        if unknown:
            after, n = "", len(sql.params)
            while True:
                page = await conn.fetch(
                    f"""SELECT p.contact_id, p.profile::text FROM {rows}
                        WHERE p.contact_id > ${n + 1} AND ({sql.inside}) IS NULL
                        ORDER BY p.contact_id LIMIT {PAGE}""",
                    *sql.params,
                    after,
                )
                if not page:
                    break
                in_python += len(page)
                for r in page:
                    profile = store.from_json(r["contact_id"], r["profile"])
                    if condition.matches(evaluation_data(profile, now)):
                        matched += 1
                        sample.append(r["contact_id"])
                sample = sorted(sample)[:SAMPLE]
                after = page[-1]["contact_id"]
    return Previewed(matched, sample, now, in_python)
