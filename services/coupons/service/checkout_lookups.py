"""What a checkout call looks up before it decides: the campaign of each code, the segments
the customer is in, and whether the shopper is blocked for guessing codes."""

import re
from typing import NamedTuple

from contracts.checkout import Customer
from services.coupons.contacts.lookup import member_segments
from services.coupons.domain import campaign as aggregate
from services.coupons.domain.guessing import retry_after
from services.coupons.runtime import Runtime
from services.coupons.service.calls import Call
from services.coupons.service.refusals import Refused
from services.coupons.store import code_claims

_CODE = re.compile(r"[A-Z0-9]{3,64}")


class Shopper(NamedTuple):
    """Whom a checkout call's guesses count against (domain.guessing.subjects_of): the API
    key, the contact, and the network of the shopper's own address if the merchant sent it
    (`domain.guessing.shopper_network`). A named tuple, made on every checkout call (see
    `domain.refusals.Priced`)."""

    key: str
    contact_id: str
    address: str | None


def throttled(call: Call, customer: Customer, address: str | None) -> Shopper:
    """The call's shopper; refused (`too_many_failures`) while the contact, the shopper's
    address or the API key is blocked for guessing."""
    shopper = Shopper(call.actor or "", customer.contact_id, address)
    wait = call.runtime.throttle.wait_s(shopper.key, shopper.contact_id, shopper.address)
    if wait is not None:
        raise _too_many_failures(wait)
    return shopper


async def guessed(call: Call, shopper: Shopper, guesses: int) -> None:
    """Count guessing refusals; refused instead of the answer if they went past an
    allowance."""
    if guesses == 0:
        return
    throttle = call.runtime.throttle
    wait = await throttle.failed(shopper.key, shopper.contact_id, shopper.address, guesses)
    if wait is not None:
        raise _too_many_failures(wait)


def _too_many_failures(wait_s: float) -> Refused:
    return Refused(
        "too_many_failures",
        "too many unknown codes or codes of other contacts; wait before trying again",
        retry_after_s=retry_after(wait_s),
    )


async def campaign_of(runtime: Runtime, code: str) -> aggregate.Campaign | None:
    """The campaign of `code` from the in-memory view. A code the view does not know yet but
    PostgreSQL's registry does (another replica just created it) is waited for."""
    view = runtime.view
    found = view.campaign_of(code)
    if found is not None or not _CODE.fullmatch(code):
        return found
    async with runtime.pool.acquire() as conn:
        campaign_id = await code_claims.campaign_of(conn, code)
    if campaign_id is None:
        return None
    return await view.wait_for_code(code, runtime.settings.command_timeout_s)


async def segments_of(
    runtime: Runtime, customer: Customer, states: list[aggregate.Campaign | None]
) -> tuple[str, ...]:
    """The segments the campaigns name that the customer is in: looked up by the server."""
    rules = [
        state.eligibility
        for state in states
        if state is not None and (state.eligibility.segments or state.eligibility.excluded_segments)
    ]
    if not rules:  # the usual campaign: nothing to look up
        return ()
    return await member_segments(runtime.pool, customer.contact_id, rules)
