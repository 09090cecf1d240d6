"""Segment conditions: JsonLogic trees with a few time macros, checked, expanded and compiled
once, then evaluated by `datalogic-py` (a Rust JsonLogic engine with a conformance suite).

A condition sees one contact (see `profile.evaluation_data`):

    {"now": epoch s, "contact_id", "email", "traits": {...}, "events": {fact: {count, last_at}},
     "coupons": {received, redeemed, last_redeemed_at, discount, revenue, campaigns: [...]}}

Timestamps (traits given as ISO-8601 text with a zone, `last_at`...) are epoch seconds.
Standard JsonLogic may not read `now`: every test that depends on the time goes through a
macro, so the instant a contact's answer can next change is computed exactly (`next_change`)
and a durable timer re-evaluates the contact then, not a periodic recompute. Macros
(`path` is a data path such as "traits.trial_ends_at"; seconds are integers):

    {"within_next":   [path, s]}   now <= t <= now + s         ("trial ends within 3 days")
    {"more_than_ago": [path, s]}   t + s < now                 ("signed up more than 30 days ago")
    {"less_than_ago": [path, s]}   now - s <= t <= now         ("redeemed in the last 90 days")
    {"exists": path}               the value is present and not null
    {"did_event": {"type": t, "where": {prop: value}?, "within": s?, "at_least": n?,
                   "in_last_days": d?}}

`in_last_days` (1 to 90) counts `at_least` (1 unless given) over the daily buckets of the
fact: today (UTC) and the d - 1 days before it ("at least 3 times in the last 30 days"). Its
answer changes when a day leaves the window, at a UTC midnight (`WindowTest`).

A missing value is null, which JsonLogic compares as 0: guard with `exists` when it matters.
"""

import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import datalogic_py

ENGINE = datalogic_py.Engine()
MAX_NODES = 500
MAX_DEPTH = 32
MAX_SECONDS = 200 * 366 * 86400
DAY = 86400
BUCKET_DAYS = 90
"""Days of daily buckets an event fact keeps (profile.fold drops older ones)."""

STANDARD = frozenset(
    {
        "and",
        "or",
        "!",
        "!!",
        "==",
        "!=",
        "===",
        "!==",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "var",
        "missing",
        "missing_some",
        "+",
        "-",
        "*",
        "/",
        "%",
        "min",
        "max",
        "if",
        "cat",
    }
)
TIME_MACROS = frozenset({"within_next", "more_than_ago", "less_than_ago"})
MACROS = TIME_MACROS | {"exists", "did_event"}
ROOTS = ("traits.", "events.", "coupons.")
ROOT_VALUES = frozenset({"contact_id", "email"})


class InvalidCondition(ValueError):
    """A condition that cannot be compiled; `path` is a JSON pointer to the fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path or "/"
        self.message = message


def fact_key(event_type: str, where: Mapping[str, object] | None = None) -> str:
    """The name of an event fact in `events`: a digest, since event types and property
    values hold dots, which JsonLogic's `var` reads as path separators."""
    return label_key(event_type if not where else f"{event_type}|{_where_label(where)}")


@lru_cache(maxsize=4096)
def label_key(label: str) -> str:
    """`fact_key` of a fact's label (`type` or `type|name=repr(value)`), cached: the
    processor asks it for every event, of a few labels (docs/performance/contacts.md)."""
    return "f" + hashlib.blake2b(label.encode(), digest_size=8).hexdigest()


def _where_label(where: Mapping[str, object]) -> str:
    ((name, value),) = where.items()
    return f"{name}={value!r}"


@dataclass(frozen=True)
class TimeTest:
    """One time-relative comparison: true while `lower <= now <= upper` given the value at
    `path` (bounds relative to it), so its answer can change only at those two edges."""

    path: str
    lower: int | None  # now >= value + lower
    upper: int | None  # now <= value + upper


@dataclass(frozen=True)
class WindowTest:
    """ "At least `at_least` in the last `days` UTC days" over the daily buckets at `path`
    (`[[age in days, count], ...]` relative to now's day, see profile.evaluation_data): its
    answer changes only at a midnight when a bucket enters or leaves the window."""

    path: str
    days: int
    at_least: int

    def count(self, buckets: list[list[int]], age_shift: int) -> int:
        """The count in the window `age_shift` days after the buckets' reference day."""
        return sum(c for age, c in buckets if 0 <= age + age_shift < self.days)

    def edges(self, value: object, now: int) -> Iterator[int]:
        """The first midnight after `now` at which the answer flips, if any."""
        if not isinstance(value, list) or not value:
            return
        today = now // DAY
        holds = self.count(value, 0) >= self.at_least
        # a bucket of age a enters the window a days ahead (a < 0) and leaves days - a ahead
        shifts = sorted({s for age, _ in value for s in (-age, self.days - age) if s > 0})
        for shift in shifts:
            if (self.count(value, shift) >= self.at_least) != holds:
                yield (today + shift) * DAY
                return


_local = threading.local()


def prepared(data: Mapping[str, Any]) -> datalogic_py.DataHandle:
    """A contact's evaluation data parsed once, for `Condition.holds` over many conditions
    (each `matches(dict)` would convert the whole dict again: 7 times slower over 21)."""
    return datalogic_py.DataHandle(dict(data))


def session() -> datalogic_py.Session:
    """This thread's evaluation session (a session reuses its memory; not thread-safe)."""
    found: datalogic_py.Session | None = getattr(_local, "session", None)
    if found is None:
        found = _local.session = ENGINE.session()
    return found


@dataclass(frozen=True)
class Condition:
    tree: Any
    rule: Any
    time_tests: tuple[TimeTest, ...]
    window_tests: tuple[WindowTest, ...] = ()
    inputs: frozenset[str] | None = None
    """What it reads, as `root.name` ("traits.plan", "events.f1a2...", "coupons.redeemed",
    "email"), `now` left out (time is the timers' business); None when the engine cannot
    tell everything it reads."""

    @cached_property
    def timed(self) -> bool:
        """Whether time alone can change its answer."""
        return bool(self.time_tests or self.window_tests)

    @cached_property
    def reads(self) -> frozenset[str] | None:
        """`inputs` and what its time tests read (`root.name`); None when not known."""
        if self.inputs is None:
            return None
        paths = [t.path for t in self.time_tests] + [t.path for t in self.window_tests]
        return self.inputs.union(".".join(p.split(".")[:2]) for p in paths)

    def reads_any(self, touched: frozenset[str]) -> bool:
        """Whether a change of the inputs `touched` can change its answer."""
        return self.inputs is None or not self.inputs.isdisjoint(touched)

    def matches(self, data: Mapping[str, Any]) -> bool:
        """Whether the contact matches; a condition that cannot be evaluated over this
        contact's values (text added to a number, say) does not match: one odd profile must
        not stop the processor."""
        return self.holds(prepared(data), session())

    def holds(self, data: datalogic_py.DataHandle, on: datalogic_py.Session) -> bool:
        """`matches` over data already `prepared`, in this thread's `session()`."""
        try:
            return on.evaluate_truthy(self.rule, data)
        except datalogic_py.DataLogicError:
            return False

    def next_change(self, data: Mapping[str, Any]) -> int | None:
        """The first whole second after `data["now"]` at which a time test can flip, or None
        when no time alone changes the answer."""
        if not self.timed:
            return None
        now: int = data["now"]
        due = [
            edge
            for test in self.time_tests
            for edge in _edges(test, _lookup(data, test.path))
            if edge > now
        ]
        due.extend(e for w in self.window_tests for e in w.edges(_lookup(data, w.path), now))
        return min(due, default=None)


def _edges(test: TimeTest, value: object) -> Iterator[int]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if test.lower is not None:
        yield int(value) + test.lower  # becomes true from here
    if test.upper is not None:
        yield int(value) + test.upper + 1  # false from here


def _lookup(data: Mapping[str, Any], path: str) -> object:
    node: object = data
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


Tests = list[TimeTest | WindowTest]


def compile_condition(tree: object) -> Condition:
    """Check `tree`, expand its macros and compile it; raise InvalidCondition at the fault."""
    tests: list[TimeTest | WindowTest] = []
    counter = [0]
    expanded = _expand(tree, "", 0, tests, counter)
    try:
        rule = ENGINE.compile(expanded)
    except Exception as error:  # the engine's own errors carry no stable path
        raise InvalidCondition("", f"not a valid JsonLogic rule: {error}") from error
    return Condition(
        tree,
        rule,
        tuple(t for t in tests if isinstance(t, TimeTest)),
        tuple(t for t in tests if isinstance(t, WindowTest)),
        _inputs(rule.facts()),
    )


def _inputs(facts: Mapping[str, Any]) -> frozenset[str] | None:
    if facts["computed_reads"] or not facts["reads_complete"]:
        return None
    return frozenset(".".join(path[:2]) for path in facts["reads"] if path and path[0] != "now")


def _expand(node: object, at: str, depth: int, tests: Tests, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES or depth > MAX_DEPTH:
        raise InvalidCondition(at, f"too large (at most {MAX_NODES} nodes, depth {MAX_DEPTH})")
    if isinstance(node, list):
        return [_expand(n, f"{at}/{i}", depth + 1, tests, counter) for i, n in enumerate(node)]
    if not isinstance(node, dict):
        if isinstance(node, str | int | float | bool) or node is None:
            return node
        raise InvalidCondition(at, "unsupported value")
    if len(node) != 1:
        raise InvalidCondition(at, "an operation is an object with exactly one operator")
    ((op, args),) = node.items()
    here = f"{at}/{op}"
    if op == "var":
        return {"var": _var_path(args, here)}
    if op in TIME_MACROS:
        return _time_macro(op, args, here, tests)
    if op == "exists":
        return {"!==": [{"var": _data_path(args, here)}, None]}
    if op == "did_event":
        return _did_event(args, here, tests)
    if op not in STANDARD:
        raise InvalidCondition(here, f"unknown operator {op!r}")
    return {op: _expand(args, here, depth + 1, tests, counter)}


def _var_path(args: object, at: str) -> object:
    path = args[0] if isinstance(args, list) and args else args
    if path == "now":
        raise InvalidCondition(at, "now may only be read through a time macro")
    _data_path(path, at if not isinstance(args, list) else f"{at}/0")
    return args


def _data_path(path: object, at: str) -> str:
    if not isinstance(path, str) or not (path in ROOT_VALUES or path.startswith(ROOTS)):
        raise InvalidCondition(at, "a path starting traits., events., coupons. (or email)")
    return path


def _seconds(value: object, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise InvalidCondition(at, "a whole number of seconds, 0 to 200 years")
    return value


def _time_macro(op: str, args: object, at: str, tests: Tests) -> Any:
    if not isinstance(args, list) or len(args) != 2:
        raise InvalidCondition(at, f"{op} takes [path, seconds]")
    path = _data_path(args[0], f"{at}/0")
    s = _seconds(args[1], f"{at}/1")
    value, now = {"var": path}, {"var": "now"}
    present = {"!==": [value, None]}
    if op == "within_next":  # now <= t <= now + s  <=>  t - s <= now <= t
        tests.append(TimeTest(path, -s, 0))
        return {"and": [present, {"<=": [now, value]}, {"<=": [value, {"+": [now, s]}]}]}
    if op == "more_than_ago":  # t + s < now  <=>  now >= t + s + 1
        tests.append(TimeTest(path, s + 1, None))
        return {"and": [present, {"<": [{"+": [value, s]}, now]}]}
    tests.append(TimeTest(path, 0, s))  # less_than_ago: t <= now <= t + s
    return {"and": [present, {"<=": [value, now]}, {"<=": [now, {"+": [value, s]}]}]}


def _did_event(args: object, at: str, tests: Tests) -> Any:
    if not isinstance(args, dict) or not isinstance(args.get("type"), str):
        raise InvalidCondition(
            at,
            'did_event takes {"type": ..., "where"?, "within"?, "at_least"?, "in_last_days"?}',
        )
    unknown = set(args) - {"type", "where", "within", "at_least", "in_last_days"}
    if unknown:
        raise InvalidCondition(f"{at}/{sorted(unknown)[0]}", "unknown field")
    where = args.get("where")
    if where is not None and (
        not isinstance(where, dict)
        or len(where) != 1
        or not all(isinstance(v, str | int | float | bool) for v in where.values())
    ):
        raise InvalidCondition(f"{at}/where", "one property and its value")
    path = f"events.{fact_key(args['type'], where)}"
    checks: list[Any] = [{"!==": [{"var": f"{path}.count"}, None]}]
    n = args.get("at_least", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000_000:
        raise InvalidCondition(f"{at}/at_least", "a whole number, at least 1")
    if "in_last_days" in args:
        days = args["in_last_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= BUCKET_DAYS:
            raise InvalidCondition(
                f"{at}/in_last_days", f"a whole number of days, 1 to {BUCKET_DAYS}"
            )
        tests.append(WindowTest(f"{path}.days", days, n))
        checks.append({">=": [_window_count(f"{path}.days", days), n]})
    elif "at_least" in args:
        checks.append({">=": [{"var": f"{path}.count"}, n]})
    if "within" in args:
        s = _seconds(args["within"], f"{at}/within")
        tests.append(TimeTest(f"{path}.last_at", None, s))
        checks.append({"<=": [{"var": "now"}, {"+": [{"var": f"{path}.last_at"}, s]}]})
    return {"and": checks}


def _window_count(path: str, days: int) -> Any:
    """The sum of the buckets `[age, count]` at `path` whose age is 0 to days - 1."""
    in_window = {"filter": [{"var": path}, {"<=": [0, {"var": "0"}, days - 1]}]}
    add = {"+": [{"var": "accumulator"}, {"var": "current.1"}]}
    return {"reduce": [in_window, add, 0]}
