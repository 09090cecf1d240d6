"""Path and header parameters, bounded as `contracts.bounds` bounds bodies: an id that could
never exist (a NUL, a control character, too long) is a `422` naming the parameter, before
anything reads PostgreSQL or writes a header with it."""

from typing import Annotated

from fastapi import Header, Path

_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"

CampaignPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
RedemptionPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
ContactPath = Annotated[str, Path(min_length=1, max_length=128, pattern=_PRINTABLE)]
JobPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
"""A code batch's or a Stripe mirror's id."""

IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]+$"
"""Printable ASCII without spaces, as Stripe's keys."""
_KEY = Header(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern=IDEMPOTENCY_KEY_PATTERN)
IdempotencyKey = Annotated[str | None, _KEY]
RequiredIdempotencyKey = Annotated[str, _KEY]
