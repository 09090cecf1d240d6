"""Segment conditions as SQL predicates over `contact_profiles p`, for preview and backfill.

`translate(tree, now, first)` turns the JsonLogic subset the segments mostly use into two
parameterised SQL expressions (user values are only ever parameters, `$first`, `$first+1`...):

* `inside`: TRUE or FALSE, the answer `conditions.Condition.matches` gives at `now`; NULL
  when this row must be evaluated in Python (a value whose type makes datalogic's answer
  depend on coercions we do not reproduce, an error, a pre-`epochs` timestamp trait);
* `due`: the row's `Condition.next_change` at `now` (NULL: none), -1 when it needs Python.

What is translated: `and or ! !!`, the comparisons between one data path and one literal,
`in` (a text in `coupons.campaigns` or in a text trait; a path in a list of texts), the
macros `exists within_next more_than_ago less_than_ago did_event` (type, where, within,
at_least). Anything else (arithmetic, `if`, two paths compared, unknown operators or macro
fields such as daily-bucket windows) makes the whole condition untranslated: `inside` is NULL
for every row, and the caller evaluates each row in Python, as before.

Exactness: each leaf is a CASE on the value's kind (null, true, false, number, text, list).
For null/true/false the answer is computed once, here, by datalogic itself on that value.
For numbers it compares as float8, like datalogic's f64 (literals beyond 2**53 are not
translated); texts compare byte-wise (`COLLATE "C"`, code point order like Rust). Where
datalogic would raise or coerce, the leaf is NULL. `and`/`or`/`!` are strict on NULL
(bitwise on int) so an unknown leaf sends its row to Python instead of being absorbed by
SQL's three-valued logic, which datalogic's errors do not follow. A property test holds the
SQL answer equal to the Python one over random profiles and conditions.

Timestamps: JsonLogic sees a trait given as ISO-8601 text with a zone as epoch seconds
(`profile.comparable`); parsing that in SQL costs microseconds a row and differs from Python
at the edges, so the stored profile carries the epoch (`epochs`, written by `store.to_json`)."""

import math
import re
from dataclasses import dataclass
from typing import Any

import datalogic_py

from services.coupons.contacts.conditions import (
    ENGINE,
    InvalidCondition,
    compile_condition,
    fact_key,
)

COUPON_DEFAULTS = {
    "received": "0",
    "redeemed": "0",
    "last_redeemed_at": "null",
    "discount": "0",
    "revenue": "0",
    "campaigns": "[]",
}
"""What `store.from_json` assumes for a coupon fact absent from the stored document."""
KINDS = {"z": None, "t": True, "f": False}
"""The kinds whose one value lets datalogic answer a leaf here, once."""
MAX_EXACT = 2**53
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_NUMBER = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$")
COMPARISONS = frozenset({"==", "!=", "===", "!==", "<", "<=", ">", ">="})
TIME_MACROS = frozenset({"within_next", "more_than_ago", "less_than_ago"})


class Untranslatable(Exception):
    """This condition (or a node of it) is evaluated in Python."""


@dataclass(frozen=True)
class SqlCondition:
    """`FROM contact_profiles p {lateral}`, then `inside` and `due` (when asked for) over it."""

    lateral: str
    inside: str
    due: str
    params: tuple[object, ...]
    translated: bool


@dataclass(frozen=True)
class Operand:
    """A data path as SQL: its kind (one letter: z null, t true, f false, n number, s text,
    a list, ? unknown), its value as float8 (kind n), text (kind s) and jsonb."""

    path: str
    kind: str
    num: str
    text: str
    json: str


def translate(tree: object, now: int, first: int = 1, *, timers: bool = False) -> SqlCondition:
    """The SQL of `tree` at `now` (parameters numbered from `$first`), with `due` when
    `timers`; untranslated (every row to Python) when part of it is outside the subset."""
    builder = _Builder(now, first)
    try:
        condition = compile_condition(tree)
        inside = builder.predicate(tree)
        due = builder.due(condition.time_tests) if timers else "NULL::bigint"
    except Untranslatable:
        return SqlCondition("", "NULL::boolean", "-1::bigint", (), False)
    return SqlCondition(builder.lateral(), inside, due, tuple(builder.params), True)


class _Builder:
    def __init__(self, now: int, first: int) -> None:
        self.now = now
        self.first = first
        self.params: list[object] = []
        self.operands: dict[str, Operand] = {}
        self.extracted: list[str] = []
        self.derived: list[str] = []

    def lateral(self) -> str:
        """Each value extracted once a row (`OFFSET 0` keeps PostgreSQL from inlining the
        expressions into every use), then its kind and number once."""
        if not self.operands:
            return ""
        return (
            f" CROSS JOIN LATERAL (SELECT {', '.join(self.extracted)} OFFSET 0) e"
            f" CROSS JOIN LATERAL (SELECT {', '.join(self.derived)} OFFSET 0) d"
        )

    def param(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}::{cast}"

    # ---- predicates ----

    def predicate(self, node: object) -> str:
        if not isinstance(node, dict) or len(node) != 1:
            raise Untranslatable
        ((op, args),) = node.items()
        if op in ("and", "or"):
            if not isinstance(args, list) or not args:
                raise Untranslatable
            bit = " & " if op == "and" else " | "
            return "((" + bit.join(f"({self.predicate(a)})::int" for a in args) + ") = 1)"
        if op in ("!", "!!"):
            arg = _unary(args)
            inner = self.truthy(arg) if _is_var(arg) else self.predicate(arg)
            return f"(NOT {inner})" if op == "!" else inner
        if op in COMPARISONS:
            return self.comparison(node, op, args)
        if op == "in":
            return self.membership(node, args)
        if op == "exists":
            return f"({self.operand(args).kind} <> 'z')"
        if op in TIME_MACROS:
            return self.time_macro(node, op, args)
        if op == "did_event":
            return self.did_event(args)
        raise Untranslatable

    def truthy(self, var: object) -> str:
        x = self.operand(_var_path(var))
        return self.leaf(
            {"!!": [var]},
            x,
            n=f"({x.num} <> 0)",
            s=f"({x.text} <> '')",
            a=f"(jsonb_array_length({x.json}) > 0)",
        )

    def comparison(self, node: Any, op: str, args: object) -> str:
        if not isinstance(args, list) or len(args) != 2:
            raise Untranslatable
        var_first = _is_var(args[0])
        var, literal = (args[0], args[1]) if var_first else (args[1], args[0])
        if not _is_var(var) or not _is_literal(literal):
            raise Untranslatable
        x = self.operand(_var_path(var))
        strict = op in ("===", "!==")
        sql_op = {"==": "=", "===": "=", "!=": "<>", "!==": "<>"}.get(op, op)
        if not var_first:
            sql_op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(sql_op, sql_op)
        n = s = "NULL"
        if isinstance(literal, bool) or literal is None:
            if strict:
                n = s = "TRUE" if op == "!==" else "FALSE"
        elif isinstance(literal, int | float):
            n = f"({x.num} {sql_op} {self.param(float(literal), 'float8')})"
            if strict:
                s = "TRUE" if op == "!==" else "FALSE"
        else:
            text = self.param(literal, "text")
            s = f'({x.text} {sql_op} {text} COLLATE "C")'
            if strict:
                n = "TRUE" if op == "!==" else "FALSE"
            elif _PLAIN_NUMBER.match(literal):
                n = f"({x.num} {sql_op} {self.param(float(literal), 'float8')})"
        return self.leaf(node, x, n=n, s=s)

    def membership(self, node: Any, args: object) -> str:
        if not isinstance(args, list) or len(args) != 2:
            raise Untranslatable
        needle, haystack = args
        if isinstance(needle, str) and _storable(needle) and _is_var(haystack):
            x = self.operand(_var_path(haystack))
            text = self.param(needle, "text")
            a = f"({x.json} ? {text})" if x.path == "coupons.campaigns" else "NULL"
            return self.leaf(node, x, s=f"(strpos({x.text}, {text}) > 0)", a=a)
        if (
            _is_var(needle)
            and isinstance(haystack, list)
            and all(isinstance(h, str) and _storable(h) for h in haystack)
        ):
            x = self.operand(_var_path(needle))
            return self.leaf(node, x, s=f"({x.text} = ANY({self.param(haystack, 'text[]')}))")
        raise Untranslatable

    def time_macro(self, node: Any, op: str, args: object) -> str:
        if not isinstance(args, list) or len(args) != 2:
            raise Untranslatable
        x = self.operand(args[0])
        now = self.param(float(self.now), "float8")
        seconds = self.param(float(args[1]), "float8")
        t = x.num
        n = {
            "within_next": f"({now} <= {t} AND {t} <= {now} + {seconds})",
            "more_than_ago": f"({t} + {seconds} < {now})",
            "less_than_ago": f"({t} <= {now} AND {now} <= {t} + {seconds})",
        }[op]
        return self.leaf(node, x, n=n)

    def did_event(self, args: object) -> str:
        if not isinstance(args, dict) or set(args) - {"type", "where", "within", "at_least"}:
            raise Untranslatable
        path = f"events.{fact_key(args['type'], args.get('where'))}"
        count, last = self.operand(f"{path}.count"), self.operand(f"{path}.last_at")
        checks = ["TRUE"]
        if "at_least" in args:
            checks.append(f"{count.num} >= {self.param(float(args['at_least']), 'float8')}")
        if "within" in args:
            now = self.param(float(self.now), "float8")
            within = self.param(float(args["within"]), "float8")
            checks.append(f"{now} <= {last.num} + {within}")
        return (
            f"(CASE WHEN {count.kind} = 'z' THEN FALSE"
            f" WHEN {count.kind} = 'n' AND {last.kind} = 'n' THEN ({' AND '.join(checks)}) END)"
        )

    def leaf(self, node: Any, x: Operand, **by_kind: str) -> str:
        """CASE on the kind of `x`: null/true/false answered by datalogic here, the others
        by the SQL given (missing: NULL, to Python)."""
        whens = [
            f"WHEN '{k}' THEN {_constant(node, x.path, v, self.now)}" for k, v in KINDS.items()
        ]
        whens += [f"WHEN '{k}' THEN {by_kind[k]}" for k in ("n", "s", "a") if k in by_kind]
        return f"(CASE {x.kind} {' '.join(whens)} END)"

    # ---- values ----

    def operand(self, path: object) -> Operand:
        if not isinstance(path, str):
            raise Untranslatable
        if path not in self.operands:
            self.operands[path] = self.register(path)
        return self.operands[path]

    def register(self, path: str) -> Operand:
        i = len(self.operands)
        j, epoch = f"e.j{i}", None
        root, _, rest = path.partition(".")
        if root == "traits" and _NAME.match(rest):
            key = self.param(rest, "text")
            self.extracted.append(f"p.profile #> ARRAY['traits', {key}, 'value'] AS j{i}")
            epoch = f"(p.profile #> ARRAY['epochs', {key}])"  # read for text only
        elif root == "coupons" and rest in COUPON_DEFAULTS:
            default = COUPON_DEFAULTS[rest]
            self.extracted.append(
                f"coalesce(p.profile #> '{{coupons,{rest}}}', '{default}'::jsonb) AS j{i}"
            )
        elif root == "events" and _fact_path(rest):
            key, _, field = rest.partition(".")
            fact = self.param(key, "text")
            self.extracted.append(f"p.profile #> ARRAY['facts', {fact}, '{field}'] AS j{i}")
        elif path == "email":
            self.extracted.append(f"p.profile -> 'email' AS j{i}")
        elif path == "contact_id":
            self.extracted.append(f"to_jsonb(p.contact_id) AS j{i}")
        else:
            raise Untranslatable
        self.derived.append(f"{_kind(j, epoch)} AS k{i}, {_number(j, epoch)} AS n{i}")
        return Operand(path, f"d.k{i}", f"d.n{i}", f"({j}#>>'{{}}')", j)

    # ---- timers ----

    def due(self, tests: Any) -> str:
        """`Condition.next_change` in SQL: the least edge after now (-1: ask Python)."""
        if not tests:
            return "NULL::bigint"
        now = self.param(self.now, "bigint")
        parts = []
        for test in tests:
            x = self.operand(test.path)
            value = f"trunc({x.num})::bigint"
            edges = []
            if test.lower is not None:
                edges.append(f"{value} + {self.param(test.lower, 'bigint')}")
            if test.upper is not None:
                edges.append(f"{value} + {self.param(test.upper + 1, 'bigint')}")
            future = ", ".join(f"CASE WHEN {e} > {now} THEN {e} END" for e in edges)
            parts.append(f"(CASE {x.kind} WHEN 'n' THEN least({future}) WHEN '?' THEN -1 END)")
        return f"least({', '.join(parts)})"


def _fact_path(rest: str) -> bool:
    key, _, field = rest.partition(".")
    return bool(_NAME.match(key)) and field in ("count", "last_at")


def _kind(j: str, epoch: str | None) -> str:
    """The kind of the value `j` as a condition sees it: a trait's text with an epoch in
    `epochs` is a number; text without one that looks like ISO-8601 (a superset of
    profile._ISO: positions, not digits) is left to Python (a row stored before `epochs`,
    or ISO text without a zone)."""
    text = f"{j}#>>'{{}}'"
    iso_like = (
        f"substr({text}, 5, 1) = '-' AND substr({text}, 8, 1) = '-'"
        f" AND substr({text}, 11, 1) = 'T' AND substr({text}, 14, 1) = ':'"
    )
    string = (
        "'s'"
        if epoch is None
        else f"CASE WHEN jsonb_typeof({epoch}) = 'number' THEN 'n' WHEN {iso_like} THEN '?'"
        " ELSE 's' END"
    )
    return (
        f"CASE jsonb_typeof({j}) WHEN 'number' THEN 'n' WHEN 'string' THEN {string}"
        f" WHEN 'boolean' THEN CASE WHEN {j} = 'true'::jsonb THEN 't' ELSE 'f' END"
        f" WHEN 'array' THEN 'a' WHEN 'object' THEN '?' ELSE 'z' END"
    )


def _number(j: str, epoch: str | None) -> str:
    if epoch is None:
        return f"CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j})::float8 END"
    return (
        f"CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j})::float8"
        f" WHEN jsonb_typeof({epoch}) = 'number' THEN ({epoch})::float8 END"
    )


def _constant(node: Any, path: str, value: object, now: int) -> str:
    """datalogic's own answer for `node` when the value at `path` is `value`."""
    data: dict[str, Any] = {"now": now, "traits": {}, "events": {}, "coupons": {}}
    target: dict[str, Any] = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    try:
        rule = compile_condition(node).rule
        return "TRUE" if ENGINE.truthy(rule.evaluate(data)) else "FALSE"
    except datalogic_py.DataLogicError:
        return "NULL"
    except InvalidCondition as error:
        raise Untranslatable from error


def _unary(args: object) -> object:
    if isinstance(args, list):
        if len(args) != 1:
            raise Untranslatable
        return args[0]
    return args


def _is_var(node: object) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "var" in node


def _var_path(node: object) -> str:
    path = node["var"] if isinstance(node, dict) else None
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    if not isinstance(path, str):
        raise Untranslatable
    return path


def _storable(text: str) -> bool:
    """Whether PostgreSQL takes `text` as a parameter (no NUL, no lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _is_literal(value: object) -> bool:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_EXACT
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_EXACT
