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
from typing import Any

from pydantic import ValidationError

from services.coupons.api.errors import ApiError

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
    """The JSON body of the API for `fields` of `form`. A blank limit means unlimited (`null`);
    any other blank field is left out, so the API's default applies."""
    nested: dict[str, Any] = {}
    for name in fields:
        if name in FLAGS:
            value: Any = name in form
        else:
            raw = form.get(name, "")
            if not raw.strip():
                if not name.startswith("limits.") or name == "limits.reservation_ttl_s":
                    continue
                value = None
            else:
                value = _value(name, raw)
        *parents, leaf = name.split(".")
        into = nested
        for part in parents:
            into = into.setdefault(part, {})
        into[leaf] = value
    return nested


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


def refused(error: ApiError) -> FieldError:
    return FieldError(error.code, error.message, error.field)
