"""Reservations: one use of a campaign held for a contact and cart until it expires ("reserve on
apply, release on timeout", for flash sales).

A hold counts against every limit exactly as a redemption does (total, per contact, per code,
budget), so reservations and redemptions together never pass a cap. It ends one of three ways:
released by the shopper, released when it expires (the campaign's writer sends itself
`ReleaseReservation(expired=True)` from a durable timer: `due`), or turned into a redemption,
which no rule can refuse any more but its expiry. The discount is fixed when it is reserved.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from immutables import Map

from contracts.commands import ReleaseReservation


@dataclass(frozen=True)
class Reservation:
    contact_id: str
    code: str
    currency: str
    amount: int
    discount: int
    total: int
    expires_at: datetime


@dataclass(frozen=True)
class Holds:
    """The reservations a campaign holds, and what they hold, per contact and per code."""

    reservations: Map[str, Reservation] = field(default_factory=Map)
    budget: int = 0
    per_contact: Map[str, int] = field(default_factory=Map)
    per_code: Map[str, int] = field(default_factory=Map)

    def __len__(self) -> int:
        return len(self.reservations)

    def add(self, reservation_id: str, held: Reservation) -> "Holds":
        return self._count(held, +1, self.reservations.set(reservation_id, held))

    def remove(self, reservation_id: str) -> "Holds":
        held = self.reservations[reservation_id]
        return self._count(held, -1, self.reservations.delete(reservation_id))

    def _count(self, held: Reservation, sign: int, reservations: Map[str, Reservation]) -> "Holds":
        return replace(
            self,
            reservations=reservations,
            budget=self.budget + sign * held.discount,
            per_contact=_add(self.per_contact, held.contact_id, sign),
            per_code=_add(self.per_code, held.code, sign),
        )


def _add(counts: Map[str, int], key: str, sign: int) -> Map[str, int]:
    n = counts.get(key, 0) + sign
    return counts.delete(key) if n == 0 and key in counts else counts.set(key, n)


class WithHolds(Mapping[str, int]):
    """Redemptions per contact plus what each contact holds, as the limits read them."""

    def __init__(self, redeemed: Mapping[str, int], held: Mapping[str, int]) -> None:
        self._redeemed, self._held = redeemed, held

    def __getitem__(self, contact_id: str) -> int:
        total = self._redeemed.get(contact_id, 0) + self._held.get(contact_id, 0)
        if not total and contact_id not in self._redeemed and contact_id not in self._held:
            raise KeyError(contact_id)
        return total

    def __iter__(self) -> Iterator[str]:
        yield from dict.fromkeys([*self._redeemed, *self._held])

    def __len__(self) -> int:
        return len(dict.fromkeys([*self._redeemed, *self._held]))


def due(campaign_id: str, holds: Holds) -> Iterator[tuple[datetime, ReleaseReservation]]:
    """The campaign's timers: each reservation is released when it expires."""
    for reservation_id, held in holds.reservations.items():
        release = ReleaseReservation(
            campaign_id=campaign_id, reservation_id=reservation_id, expired=True
        )
        yield held.expires_at, release
