"""Stable, machine-readable reason codes. Values never change meaning once published."""

from enum import StrEnum


class Reason(StrEnum):
    # refusals of a command by the decider
    CAMPAIGN_EXISTS = "campaign_exists"
    CAMPAIGN_NOT_FOUND = "campaign_not_found"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_STATUS_TRANSITION = "invalid_status_transition"
    INVALID_TERMS = "invalid_terms"
    REDEMPTION_NOT_FOUND = "redemption_not_found"
    REDEMPTION_EXISTS = "redemption_exists"
    ALREADY_REVERSED = "already_reversed"
    NO_CODE_AVAILABLE = "no_code_available"
    OUT_OF_RANGE = "out_of_range"
    """the result would leave the bounds every consumer can store (contracts.bounds)"""
    # why a code may not be redeemed (checked in the order of domain.eligibility)
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
    NOT_IN_SEGMENT = "not_in_segment"
    EXCLUDED_SEGMENT = "excluded_segment"
    BOUND_TO_ANOTHER_CONTACT = "bound_to_another_contact"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_STACKABLE = "not_stackable"
