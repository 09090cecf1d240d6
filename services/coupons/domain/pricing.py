"""How much a discount takes off a cart, in integer minor units.

The discount applies to the *eligible amount*: the items whose product id or plan id is
listed in `Eligibility.products`, or the whole cart total when that list is empty.

Rounding: a percentage is computed exactly (the `Decimal` percent is turned into an exact
integer ratio; no float, no decimal-context precision limit) and rounded to the minor unit
half up, so 15% of 333 = 49.95 -> 50 and 12.5% of 4 = 0.5 -> 1, 10% of 4 = 0.4 -> 0. The
result is then capped by `max_amount_off`. Whatever the kind, a discount is never negative
and never more than the eligible amount it applies to.

Stacking: several codes apply in the order sent, each to what is left. A code's base is its
eligible amount, but never more than the cart total minus what earlier codes took off
(`already_off`), so two 50% codes give 75% off, and the total never goes below zero.
"""

from contracts.checkout import Cart, LineItem
from contracts.money import AmountOff, Discount, PercentOff
from contracts.rules import Eligibility


def applies_to(item: LineItem, eligibility: Eligibility) -> bool:
    """Whether the discount covers this line (every line when no products are listed)."""
    if not eligibility.products:
        return True
    return item.product_id in eligibility.products or (
        item.plan_id is not None and item.plan_id in eligibility.products
    )


def eligible_amount(cart: Cart, eligibility: Eligibility) -> int:
    """The part of the cart the discount applies to. A cart without items has no eligible
    part when the discount is restricted to products."""
    if not eligibility.products:
        return cart.amount
    return sum(item.subtotal for item in cart.items if applies_to(item, eligibility))


def discount_for(
    discount: Discount, cart: Cart, eligibility: Eligibility, already_off: int = 0
) -> int:
    """The discount in minor units of `cart.currency`, after earlier codes took `already_off`.
    Raises ValueError when the discount is tied to another currency
    (`eligibility.check_currency` refuses such carts first)."""
    currency = bound_currency(discount)
    if currency not in (None, cart.currency):
        raise ValueError(f"discount in {currency}, cart in {cart.currency}")
    if not 0 <= already_off <= cart.amount:
        raise ValueError(f"already_off {already_off} outside 0..{cart.amount}")
    base = min(eligible_amount(cart, eligibility), cart.amount - already_off)
    match discount:
        case PercentOff():
            off = percent_of(base, discount)
            if discount.max_amount_off is not None:
                off = min(off, discount.max_amount_off)
        case AmountOff():
            off = discount.amount_off
    return max(0, min(off, base))


def percent_of(amount: int, discount: PercentOff) -> int:
    """`amount * percent / 100`, rounded half up to the minor unit, exactly."""
    numerator, denominator = discount.percent_off.as_integer_ratio()
    return _round_half_up(amount * numerator, denominator * 100)


def total_after(cart: Cart, discount: int, already_off: int = 0) -> int:
    """What the customer pays after every code. Raises ValueError for a discount outside what
    is left, which `discount_for` never returns: a bad amount here is a bug, not to clamp."""
    left = cart.amount - already_off
    if not 0 <= discount <= left:
        raise ValueError(f"discount {discount} outside 0..{left}")
    return left - discount


def bound_currency(discount: Discount) -> str | None:
    """The currency a discount only works in: an amount off's or a capped percentage's.
    None for an uncapped percentage, which works in any currency."""
    match discount:
        case PercentOff():
            return discount.currency if discount.max_amount_off is not None else None
        case AmountOff():
            return discount.currency


def _round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, for numerator >= 0 and denominator > 0."""
    return (2 * numerator + denominator) // (2 * denominator)
