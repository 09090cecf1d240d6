"""Conditions evaluated in PostgreSQL (contacts/condition_sql.py) agree with conditions.py:
for random profiles stored as the processor stores them and random conditions, at the same
`now`, every row SQL answers (inside, and the next instant the answer can change) has the
answer Python gives; rows SQL leaves to Python are NULL, never a different answer."""

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.contacts import ContactEvent
from services.coupons.contacts import backfill, processor, store
from services.coupons.contacts.condition_sql import translate
from services.coupons.contacts.conditions import compile_condition, fact_key
from services.coupons.contacts.profile import (
    CouponFacts,
    Fact,
    Profile,
    Trait,
    evaluation_data,
)
from services.coupons.settings import Settings
from services.coupons.store.migrate import migrate
from tests.integration.test_segments import event

pytestmark = pytest.mark.integration

NOW = 1_796_000_000
DAY = 86400
EVENTS = [("page.viewed", None), ("page.viewed", {"path": "/pricing"}), ("trial.will_end", None)]
STAMPS = [NOW + d for d in (-3 * DAY, -DAY - 1, -60, -1, 0, 1, 59, DAY, 3 * DAY, 3 * DAY + 1)]


def iso(at: int, zone: str = "Z") -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S") + zone


TEXTS = ["", "a", "b", "abc", "1", "1.5", "0", "pro", "2026-02-30T10:00:00Z", "2026-12-05T10:00"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 2.0, 1e15]),
    st.sampled_from(TEXTS),
    st.sampled_from(STAMPS),
    st.builds(iso, st.sampled_from(STAMPS), st.sampled_from(["Z", "+02:00", "-00:30"])),
)
literals = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.5, 2**53, NOW, float(NOW + DAY)]),
    st.sampled_from([*TEXTS, "1e2", "-1"]),
)
TRAITS = ["a", "b", "t"]
PATHS = [
    *(f"traits.{n}" for n in TRAITS),
    "coupons.received",
    "coupons.redeemed",
    "coupons.last_redeemed_at",
    "coupons.campaigns",
    "email",
    "contact_id",
    *(f"events.{fact_key(t, w)}.{f}" for t, w in EVENTS for f in ("count", "last_at")),
]
TIME_PATHS = [*(f"traits.{n}" for n in TRAITS), "coupons.last_redeemed_at"]


@st.composite
def profiles(draw: Any, contact_id: str) -> str:
    traits = {
        n: Trait(draw(values), NOW - 10, f"e{n}")
        for n in draw(st.lists(st.sampled_from(TRAITS), unique=True))
    }
    facts = {}
    for k in draw(st.lists(st.sampled_from(range(len(EVENTS))), unique=True)):
        event_type, where = EVENTS[k]
        label = event_type if not where else f"{event_type}|path='/pricing'"
        facts[fact_key(event_type, where)] = Fact(
            label, draw(st.integers(1, 4)), draw(st.sampled_from(STAMPS))
        )
    coupons = CouponFacts(
        received=draw(st.integers(0, 2)),
        redeemed=draw(st.integers(0, 2)),
        last_redeemed_at=draw(st.none() | st.sampled_from(STAMPS)),
        campaigns=tuple(draw(st.lists(st.sampled_from(["X", "Y"]), unique=True))),
    )
    email = draw(st.none() | st.just("ann@example.com"))
    stored = json.loads(
        store.to_json(Profile(contact_id, email, 0, traits, facts=facts, coupons=coupons))
    )
    if draw(st.integers(0, 4)) == 0:
        del stored["epochs"]  # a row written before `epochs`
    if draw(st.integers(0, 9)) == 0:
        stored = {}  # a profile locked but never saved
    return json.dumps(stored)


def var(path: str) -> dict[str, str]:
    return {"var": path}


leaves = st.one_of(
    st.builds(
        lambda op, p, lit, flip: {op: [lit, var(p)] if flip else [var(p), lit]},
        st.sampled_from(["==", "!=", "===", "!==", "<", "<=", ">", ">="]),
        st.sampled_from(PATHS),
        literals,
        st.booleans(),
    ),
    st.builds(
        lambda t, p: {"in": [t, var(p)]},
        st.sampled_from(["X", "a", "", "1"]),
        st.sampled_from(PATHS),
    ),
    st.builds(
        lambda p, h: {"in": [var(p), h]},
        st.sampled_from(PATHS),
        st.lists(st.sampled_from(["a", "pro", "1", "", "X"]), max_size=3),
    ),
    st.builds(lambda p: {"exists": p}, st.sampled_from(PATHS)),
    st.builds(
        lambda op, p, s: {op: [p, s]},
        st.sampled_from(["within_next", "more_than_ago", "less_than_ago"]),
        st.sampled_from(TIME_PATHS),
        st.sampled_from([0, 1, 60, DAY, 3 * DAY]),
    ),
    st.builds(
        lambda e, within, at_least: {
            "did_event": {
                "type": e[0],
                **({"where": e[1]} if e[1] else {}),
                **({"within": within} if within is not None else {}),
                **({"at_least": at_least} if at_least else {}),
            }
        },
        st.sampled_from(EVENTS),
        st.none() | st.sampled_from([0, 60, DAY]),
        st.none() | st.integers(1, 3),
    ),
    st.builds(lambda op, p: {op: var(p)}, st.sampled_from(["!!", "!"]), st.sampled_from(PATHS)),
    st.builds(lambda p: {">": [{"+": [var(p), 1]}, 2]}, st.sampled_from(PATHS)),  # to Python
)
conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"!": x}, inner),
    ),
    max_leaves=6,
)


def test_sql_answers_equal_python_answers(settings_: Settings) -> None:
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(settings_.database_url))
    loop.run_until_complete(migrate(conn))
    compared = {"rows": 0, "in_sql": 0, "due_in_sql": 0}

    async def check(rows: list[str], trees: list[Any], now: int) -> None:
        await conn.execute("TRUNCATE contact_profiles")
        await conn.executemany(
            "INSERT INTO contact_profiles (contact_id, profile) VALUES ($1, $2::jsonb)",
            [(f"c{i:02d}", r) for i, r in enumerate(rows)],
        )
        for tree in trees:
            condition = compile_condition(tree)
            sql = translate(tree, now, timers=True)
            found = await conn.fetch(
                f"""SELECT p.contact_id, p.profile::text, ({sql.inside}) AS inside,
                           ({sql.due}) AS due FROM contact_profiles p{sql.lateral}""",
                *sql.params,
            )
            assert len(found) == len(rows)
            for r in found:
                data = evaluation_data(store.from_json(r["contact_id"], r["profile"]), now)
                compared["rows"] += 1
                if r["inside"] is not None:
                    compared["in_sql"] += 1
                    assert r["inside"] == condition.matches(data), (tree, r["profile"], now)
                if r["due"] != -1:
                    compared["due_in_sql"] += 1
                    assert r["due"] == condition.next_change(data), (tree, r["profile"], now)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.data(),
        st.lists(conditions, min_size=1, max_size=4),
        st.sampled_from([NOW, NOW + 1, NOW + 59, NOW - DAY]),
    )
    def probe(data: st.DataObject, trees: list[Any], now: int) -> None:
        rows = [data.draw(profiles(f"c{i:02d}")) for i in range(data.draw(st.integers(1, 12)))]
        loop.run_until_complete(check(rows, trees, now))

    try:
        probe()
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    # not vacuous: many answers came from SQL (random conditions hold many leaves it leaves to
    # Python on purpose: arithmetic, a number compared with text...)
    assert compared["in_sql"] > compared["rows"] / 3, compared
    assert compared["due_in_sql"] > compared["rows"] / 2, compared


@pytest.fixture
def settings_(settings: Settings) -> Settings:
    return settings


async def test_a_backfill_enters_in_sql_and_brings_each_contacts_timer_forward(
    settings: Settings,
) -> None:
    """A time-relative segment backfilled in SQL: who is inside now entered, and each contact's
    one timer is this segment's next change unless another segment needs it earlier."""
    now = int(time.time())
    pool = await asyncpg.create_pool(settings.database_url)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            found = [  # ends in 1 h (inside), in 2 days (enters in 1 day), 3 h ago (never)
                ContactEvent.model_validate(event(f"e{i}", f"c{i}", now, ends=iso(now + d)))
                for i, d in enumerate((3600, 2 * DAY, -3 * 3600))
            ]
            async with conn.transaction():
                await processor.apply(conn, found)
                await conn.execute("INSERT INTO contact_timers VALUES ('c1', $1)", now + 60)
                await conn.execute(
                    """INSERT INTO segments (id, name, kind, condition)
                       VALUES ('d', 'D', 'live', $1)""",
                    json.dumps({"within_next": ["traits.ends", DAY]}),
                )
                await backfill.start(conn, "d", 1)
        runner = backfill.BackfillRunner(pool)
        while await runner.step():
            pass
        async with pool.acquire() as conn:
            members = await conn.fetch("SELECT contact_id FROM segment_members")
            timers = dict(await conn.fetch("SELECT contact_id, due_at FROM contact_timers"))
            causes = await conn.fetch("SELECT message->>'cause' AS cause FROM segment_outbox")
    finally:
        await pool.close()
    assert [r["contact_id"] for r in members] == ["c0"]
    assert [r["cause"] for r in causes] == ["backfill:d:1"]
    # c0 leaves when ends passes; c1 would enter a day before its end, but its earlier timer
    # (another segment's) is kept; c2 never changes again
    assert timers == {"c0": now + 3600 + 1, "c1": now + 60}
