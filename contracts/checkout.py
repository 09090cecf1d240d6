"""What checkout sends with a redemption: the cart and the customer.

Money is integer minor units in the cart's one currency, as everywhere in `contracts`.
"""

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from contracts.base import Currency, Frozen
from contracts.bounds import MAX_ITEMS, Amount, Count, EmailText, Flag, Id128

ProductRef = Id128
"""A product id or a plan id, as the billing system names it."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class LineItem(Frozen):
    """One line of the cart: `quantity` units at `amount` minor units each."""

    product_id: ProductRef
    plan_id: ProductRef | None = None
    amount: Amount
    quantity: Count = 1

    @property
    def subtotal(self) -> int:
        return self.amount * self.quantity


class Cart(Frozen):
    """The cart total before any discount. Items are optional; when given they must add up
    to `amount`, so that a product-restricted discount and the total never disagree."""

    currency: Currency
    amount: Amount
    items: Annotated[tuple[LineItem, ...], Field(max_length=MAX_ITEMS)] = ()

    @model_validator(mode="after")
    def _items_add_up(self) -> "Cart":
        if self.items:
            total = sum(item.subtotal for item in self.items)
            if total != self.amount:
                raise ValueError(f"items add up to {total}, cart amount is {self.amount}")
        return self


class Customer(Frozen):
    """Who is redeeming. `first_purchase` is what the caller knows (None: unknown)."""

    contact_id: Id128
    email: EmailText | None = None
    first_purchase: Flag | None = None

    @field_validator("email")
    @classmethod
    def _basic_email(cls, email: str | None) -> str | None:
        """Lower-cased so that domain rules compare exactly; the check is deliberately basic
        (one '@', a dotted domain, no spaces): the mail system is the real validator."""
        if email is None:
            return None
        email = email.strip().lower()
        if not _EMAIL.match(email):
            raise ValueError("not an email address")
        return email

    @property
    def email_domain(self) -> str | None:
        return None if self.email is None else self.email.rsplit("@", 1)[1]
