"""Upcasters turn stored payloads of old versions into the current shape, on read.

Old event versions stay in the log forever. When a payload's shape changes, its type name gets
a new version (`...v2`), the old model is deleted, and a small function is registered here:
`UPCASTERS["coupon.x.v1"] = lambda data: {**data, "type": "coupon.x.v2", "new_field": ...}`.
Chains (v1 -> v2 -> v3) apply one step at a time until a current type name is reached.
"""

from collections.abc import Callable, Mapping
from typing import Any

RawPayload = dict[str, Any]
Upcaster = Callable[[RawPayload], RawPayload]

UPCASTERS: Mapping[str, Upcaster] = {}

MAX_STEPS = 32


def upcast(data: RawPayload, upcasters: Mapping[str, Upcaster]) -> RawPayload:
    """Apply upcasters to a raw payload until its type name has none registered."""
    for _ in range(MAX_STEPS):
        step = upcasters.get(str(data.get("type")))
        if step is None:
            return data
        data = step(data)
    raise ValueError(f"upcaster chain longer than {MAX_STEPS} steps at {data.get('type')!r}")
