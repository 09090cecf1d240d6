"""Stable, machine-readable reason codes. Values never change meaning once published."""

from enum import StrEnum


class Reason(StrEnum):
    CAMPAIGN_EXISTS = "campaign_exists"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
