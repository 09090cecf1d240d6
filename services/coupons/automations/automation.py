"""An automation as the trigger and send steps see it: its definition, compiled condition,
status and version. Pure."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from contracts.automations import AutomationDefinition, Status
from services.coupons.contacts.conditions import Condition, compile_condition

HOLDOUT_BUCKETS = 10_000


@dataclass(frozen=True)
class Automation:
    id: str
    version: int
    status: Status
    definition: AutomationDefinition
    condition: Condition | None

    @classmethod
    def of(
        cls, id: str, version: int, status: Status, definition: AutomationDefinition
    ) -> "Automation":
        tree = definition.condition
        condition = None if tree is None else compile_condition(tree)
        return cls(id, version, status, definition, condition)

    def live_at(self, now: datetime) -> bool:
        """Active, and inside its window."""
        d = self.definition
        return (
            self.status == "active"
            and (d.starts_at is None or d.starts_at <= now)
            and (d.ends_at is None or now < d.ends_at)
        )


def held_out(source_id: str, contact_id: str, percent: float) -> bool:
    """Whether the contact is in the source's control group: a stable share `percent` of
    contacts, by a hash of both ids (the same answer on every replica, run and replay)."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{source_id}\x1f{contact_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % HOLDOUT_BUCKETS
    return bucket < round(percent * HOLDOUT_BUCKETS / 100)
