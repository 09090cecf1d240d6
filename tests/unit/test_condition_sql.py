"""The SQL translation of segment conditions (contacts/condition_sql.py) as text: what is
translated, what is left to Python, and that user values only ever travel as parameters.
Its answers are compared with Python's on real PostgreSQL in
tests/integration/test_condition_sql.py."""

from services.coupons.contacts.condition_sql import translate

NOW = 1_796_000_000
TRIAL_ENDING = {
    "and": [
        {"within_next": ["traits.trial_ends_at", 259200]},
        {">": [{"var": "traits.engagement_score"}, 50]},
        {"!": {"did_event": {"type": "page.viewed", "where": {"path": "/pricing"}}}},
        {"in": ["X", {"var": "coupons.campaigns"}]},
    ]
}


def test_the_documented_conditions_are_translated_with_their_timers() -> None:
    sql = translate(TRIAL_ENDING, NOW, timers=True)
    assert sql.translated
    assert "least(" in sql.due
    assert NOW in sql.params


def test_what_sql_does_not_cover_is_left_whole_to_python() -> None:
    for tree in (
        {">": [{"+": [{"var": "traits.a"}, 1]}, 2]},  # arithmetic
        {"==": [{"var": "traits.a"}, {"var": "traits.b"}]},  # two paths
        {"if": [{"var": "traits.a"}, True, False]},
        {"and": [{"var": "traits.a"}]},  # a bare value where a test belongs
        {"==": [{"var": "traits.a"}, "nul\x00"]},  # text PostgreSQL cannot take
    ):
        sql = translate(tree, NOW, timers=True)
        assert not sql.translated
        assert (sql.inside, sql.due, sql.params) == ("NULL::boolean", "-1::bigint", ())


def test_user_values_are_parameters_never_sql_text() -> None:
    hostile = "x'); DROP TABLE contact_profiles; --"
    sql = translate(
        {"or": [{"==": [{"var": "traits.plan"}, hostile]}, {"in": [hostile, {"var": "email"}]}]},
        NOW,
        first=3,
    )
    assert sql.translated
    text = sql.lateral + sql.inside
    assert hostile not in text and "plan" not in text
    assert hostile in sql.params and "plan" in sql.params
    assert "$3::" in text and "$2::" not in text
