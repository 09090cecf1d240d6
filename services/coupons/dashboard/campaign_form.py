"""The campaign forms (new campaign, change terms) as the API's JSON bodies, and the API's
refusals as errors beside their fields.

A form posts flat fields named by their path in the API's body (`discount.percent_off`,
`limits.per_contact`); `body` nests them, typed only as far as HTML cannot say (a number field
is an `int` when it reads as one, a checkbox a bool, a list one item per line or comma, a
`datetime-local` a UTC time). Whether a value is allowed is decided by the API's own models
and handlers, never here: a value that is not a number is passed on as text, so the API's
model refuses it with its own code and field."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.coupons.service.refusals import Refused

INTEGERS = frozenset(
    {
        "discount.amount_off",
        "discount.max_amount_off",
        "duration.months",
        "limits.max_redemptions",
        "limits.per_contact",
        "limits.per_code",
        "limits.budget",
        "limits.reservation_ttl_s",
        "limits.codes_low_at",
        "limits.codes_top_up",
        "eligibility.min_amount",
    }
)
LISTS = frozenset(
    {
        "eligibility.products",
        "eligibility.email_domains",
        "eligibility.segments",
        "eligibility.excluded_segments",
    }
)
NULLABLE = frozenset(
    {
        "limits.max_redemptions",
        "limits.per_contact",
        "limits.per_code",
        "limits.budget",
        "limits.codes_low_at",
        "limits.codes_top_up",
        "eligibility.min_amount",
    }
)
FLAGS = ("eligibility.first_purchase_only", "eligibility.bound_to_contact", "eligibility.stackable")
TIMES = frozenset({"validity.starts_at", "validity.expires_at"})
DISCOUNT_FIELDS = {
    "percent": (
        "discount.kind",
        "discount.percent_off",
        "discount.max_amount_off",
        "discount.currency",
    ),
    "amount": ("discount.kind", "discount.amount_off", "discount.currency"),
}
RULES = (
    "validity.starts_at",
    "validity.expires_at",
    "limits.max_redemptions",
    "limits.per_contact",
    "limits.per_code",
    "limits.budget",
    "limits.reservation_ttl_s",
    "limits.codes_low_at",
    "limits.codes_top_up",
    "eligibility.min_amount",
    "eligibility.products",
    *FLAGS,
    "eligibility.email_domains",
    "eligibility.segments",
    "eligibility.excluded_segments",
)
"""The fields of the rules a campaign's terms can change later too."""
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


@dataclass(frozen=True)
class FieldError:
    """A refusal as the API gives it (`code`, `message`, `field`), and the form field it
    belongs beside (`None`: the whole form)."""

    code: str
    message: str
    field: str | None


def _value(name: str, raw: str) -> Any:
    text = raw.strip()
    if name in LISTS:
        return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]
    if name in INTEGERS and re.fullmatch(r"-?\d{1,30}", text):
        return int(text)
    if name in TIMES and _LOCAL_TIME.match(text):
        return text + ("" if text.count(":") == 2 else ":00") + "Z"  # the form says UTC
    return text


def body(form: Mapping[str, str], fields: Iterable[str]) -> dict[str, Any]:
    """The JSON body of the API for `fields` of `form`. A blank limit or minimum means none
    (`null`), a blank list an empty one; any other blank field is left out, so the API's
    default applies (a new campaign) or the current value stays (changed terms)."""
    nested: dict[str, Any] = {}
    for name in fields:
        raw = form.get(name, "")
        if name in FLAGS:
            value: Any = name in form
        elif raw.strip() or name in LISTS:
            value = _value(name, raw)
        elif name in NULLABLE:
            value = None
        else:
            continue
        *parents, leaf = name.split(".")
        into = nested
        for part in parents:
            into = into.setdefault(part, {})
        into[leaf] = value
    return nested


def values(part: str, current: Mapping[str, Any]) -> dict[str, str]:
    """A campaign's `part` (`validity`, `limits`, `eligibility`) as the form's fields: the
    inverse of `body`, to show the current terms in a form."""
    shown: dict[str, str] = {}
    for key, value in current.items():
        name = f"{part}.{key}"
        if isinstance(value, bool):
            if value:
                shown[name] = "on"
        elif isinstance(value, list | tuple):
            shown[name] = "\n".join(str(v) for v in value)
        elif isinstance(value, datetime):
            shown[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        elif name in TIMES and isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            shown[name] = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        elif value is not None:
            shown[name] = str(value)
    return shown


def changes(
    form: Mapping[str, str], shown: Mapping[str, str], fields: Iterable[str]
) -> dict[str, Any]:
    """The body of only the fields whose value in `form` differs from the one `shown` (the
    current terms, as `values` gives them): a time shown to the minute that was left alone is
    not sent back truncated, and the audit trail records what a person changed."""
    fields = tuple(fields)
    sent, before = body(form, fields), body(shown, fields)
    changed: dict[str, Any] = {}
    for part, value in sent.items():
        if not isinstance(value, dict):
            if value != before.get(part):
                changed[part] = value
            continue
        differs = {k: v for k, v in value.items() if v != before.get(part, {}).get(k, object())}
        if differs:
            changed[part] = differs
    return changed


def discount_fields(form: Mapping[str, str]) -> tuple[str, ...]:
    """The discount fields of the kind chosen (the other kind's fields are not sent)."""
    return DISCOUNT_FIELDS.get(form.get("discount.kind", ""), ("discount.kind",))


def invalid(error: ValidationError) -> FieldError:
    """The first of the model's errors, as the API answers it (`invalid_request`, the field's
    path); the discount's kind tag pydantic puts in the path is dropped to name the field."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    if loc[:1] == ["discount"] and loc[1:2] and loc[1] in DISCOUNT_FIELDS:
        del loc[1]
    field = ".".join(loc) or None
    return FieldError(
        "invalid_request", f"{field}: {first['msg']}" if field else first["msg"], field
    )


def refused(error: Refused) -> FieldError:
    return FieldError(error.code, error.message, error.field)
