"""Commands of one shared-code campaign, for the writer engine's unit tests."""

from typing import Any

from contracts.checkout import Cart, Customer
from contracts.commands import DefineCampaign, RedeemCode
from contracts.money import AmountOff
from contracts.rules import Limits

CAMPAIGN = "spring"


def define(**limits: Any) -> DefineCampaign:
    """The campaign `spring` (code SPRING, 1 EUR off), unlimited per contact unless told."""
    return DefineCampaign(
        campaign_id=CAMPAIGN,
        name="Spring",
        code="SPRING",
        discount=AmountOff(amount_off=100, currency="EUR"),
        limits=Limits(**{"per_contact": None, **limits}),
    )


def redeem(n: int, contact: str | None = None) -> RedeemCode:
    """Redemption `r<n>` of SPRING, by contact `c<n>` unless told, on a 10 EUR cart."""
    return RedeemCode(
        campaign_id=CAMPAIGN,
        redemption_id=f"r{n}",
        code="SPRING",
        customer=Customer(contact_id=contact or f"c{n}"),
        cart=Cart(currency="EUR", amount=1000),
        order_ref=f"o{n}",
    )
