"""Path, query and header parameters, bounded as `contracts.bounds` bounds bodies: an id that
could never exist (a NUL, a control character, too long) is a `422` naming the parameter,
before anything reads PostgreSQL or writes a header with it."""

from typing import Annotated

from fastapi import Depends, Header, Path, Query, Response

from services.coupons.service.calls import key_or_fresh

_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
"""A campaign's or a segment's id (1 to 64 of these)."""

CampaignPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID_PATTERN)]
SegmentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID_PATTERN)]
RedemptionPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
ContactPath = Annotated[str, Path(min_length=1, max_length=128, pattern=_PRINTABLE)]
JobPath = Annotated[str, Path(min_length=1, max_length=64, pattern=_PRINTABLE)]
"""A code batch's or a Stripe mirror's id."""
Cursor = Annotated[str | None, Query(min_length=1, max_length=256, pattern=_PRINTABLE)]
"""A page's `next_cursor` passed back: PostgreSQL refuses a NUL in text (a 500 once, found by
the fuzzer), so one is refused here; what is left is judged by the endpoint."""

IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]+$"
"""Printable ASCII without spaces, as Stripe's keys."""
_KEY = Header(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern=IDEMPOTENCY_KEY_PATTERN)
IdempotencyKey = Annotated[str | None, _KEY]
RequiredIdempotencyKey = Annotated[str, _KEY]


async def _key_or_fresh(response: Response, idempotency_key: IdempotencyKey = None) -> str:
    key = key_or_fresh(idempotency_key)
    response.headers["Idempotency-Key"] = key
    return key


KeyOrFresh = Annotated[str, Depends(_key_or_fresh)]
"""The caller's optional `Idempotency-Key`, or a fresh one; either way it is echoed in the
`Idempotency-Key` response header, so the caller can retry with it."""
