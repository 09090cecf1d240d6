"""Stable, machine-readable reasons a redemption is refused. Values never change meaning once
published; checkout shows a message per value."""

from enum import StrEnum


class RefusalReason(StrEnum):
    UNKNOWN_CODE = "unknown_code"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"
    PAUSED = "paused"
    ENDED = "ended"
    EXHAUSTED = "exhausted"
    CODE_EXHAUSTED = "code_exhausted"
    PER_CONTACT_LIMIT = "per_contact_limit"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BELOW_MINIMUM = "below_minimum"
    NOT_APPLICABLE = "not_applicable"
    FIRST_PURCHASE_ONLY = "first_purchase_only"
    EMAIL_DOMAIN_NOT_ALLOWED = "email_domain_not_allowed"
    BOUND_TO_ANOTHER_CONTACT = "bound_to_another_contact"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_STACKABLE = "not_stackable"
