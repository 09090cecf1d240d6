"""A campaign's state, folded from its events: its terms, its usage (in persistent maps,
`immutables.Map`, a HAMT, so `evolve` stays pure without copying a campaign's whole history on
every event; the ledger of redemptions in a structure of its own, `ledger`), its unique codes,
and what its reservations hold."""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from immutables import Map

from contracts.commands import Status
from contracts.money import Discount
from contracts.rules import Duration, Eligibility, Limits, Validity
from services.coupons.domain import eligibility as checks
from services.coupons.domain.ledger import Ledger, Redemption
from services.coupons.domain.reservations import Holds, WithHolds

__all__ = ["Campaign", "CodeChunk", "Ledger", "Redemption"]


@dataclass(frozen=True, slots=True)
class CodeChunk:
    """Unique codes added together, in the order they are handed out. Chunks are never
    changed, so adding one to a campaign with a million codes copies nothing."""

    codes: tuple[str, ...]
    members: frozenset[str]

    @classmethod
    def of(cls, codes: tuple[str, ...]) -> "CodeChunk":
        return cls(codes, frozenset(codes))


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    discount: Discount
    defined_at: datetime
    code: str | None = None
    status: Status = "active"
    duration: Duration = field(default_factory=Duration)
    validity: Validity = field(default_factory=Validity)
    limits: Limits = field(default_factory=Limits)
    eligibility: Eligibility = field(default_factory=Eligibility)
    distributed: int = 0
    redemptions: int = 0  # not reversed
    budget_spent: int = 0
    per_contact: Map[str, int] = field(default_factory=Map)
    per_code: Map[str, int] = field(default_factory=Map)
    ledger: Ledger = field(default_factory=Ledger)  # every redemption, for ever: `ledger`
    # unique codes: in chunks, in the order they are handed out; how many have been; who
    # holds each code given out, and which code each contact holds
    chunks: tuple[CodeChunk, ...] = ()
    handed_out: int = 0
    holder_of: Map[str, str] = field(default_factory=Map)
    holders: Map[str, str] = field(default_factory=Map)
    holds: Holds = field(default_factory=Holds)

    def is_unique(self, code: str) -> bool:
        return any(code in chunk.members for chunk in self.chunks)

    def owns(self, code: str) -> bool:
        return code == self.code or self.is_unique(code)

    def not_owned(self, codes: tuple[str, ...]) -> list[str]:
        """`codes` without repeats and without those the campaign has, in order. Set
        operations per chunk, not a lookup in every chunk per code: at a million codes this
        was most of the time spent deciding a chunk."""
        wanted = set(codes)
        owned: set[str] = set() if self.code is None else wanted & {self.code}
        for chunk in self.chunks:
            owned |= chunk.members & wanted
        if not owned and len(wanted) == len(codes):
            return list(codes)  # the usual case: all new, no repeats
        return [c for c in dict.fromkeys(codes) if c not in owned]

    def unique_left(self) -> int:
        """Unique codes not yet given out."""
        return sum(len(chunk.codes) for chunk in self.chunks) - self.handed_out

    def next_unique(self) -> str | None:
        """The next unique code to hand out, if any is left."""
        index = self.handed_out
        for chunk in self.chunks:
            if index < len(chunk.codes):
                return chunk.codes[index]
            index -= len(chunk.codes)
        return None

    def per_code_limit(self, code: str) -> int | None:
        """A unique code is single-use unless `limits.per_code` says otherwise."""
        return self.limits.per_code or 1 if self.is_unique(code) else self.limits.per_code

    def terms(self, code: str) -> tuple[checks.Offer, checks.Usage]:
        """What a use of `code` (one of the campaign's) is checked against: the offer, and
        the usage its limits count."""
        if code == self.code:
            return self._shared_terms
        return self._terms(code)

    @cached_property
    def _shared_terms(self) -> tuple[checks.Offer, checks.Usage]:
        """The shared code's: the same for every use of it, so built once per version of the
        campaign, not once per validation. Every event makes a new `Campaign` (`replace`
        copies no cache), so they are never stale."""
        assert self.code is not None
        return self._terms(self.code)

    def _terms(self, code: str) -> tuple[checks.Offer, checks.Usage]:
        offer = checks.Offer(
            status=self.status,
            discount=self.discount,
            validity=self.validity,
            limits=self.limits_for(code),
            eligibility=self.eligibility,
            bound_contact_id=self.holder_of.get(code),
        )
        return offer, self.usage(code)

    def __getstate__(self) -> dict[str, object]:
        """Pickled (a snapshot) without what `cached_property` keeps."""
        state = dict(self.__dict__)
        state.pop("_shared_terms", None)
        return state

    def limits_for(self, code: str) -> Limits:
        per_code = self.per_code_limit(code)
        if per_code == self.limits.per_code:
            return self.limits  # no copy: validations call this on every request
        return self.limits.model_copy(update={"per_code": per_code})

    def usage(self, code: str) -> checks.Usage:
        """What the limits count: redemptions, and the uses reservations hold."""
        holds = self.holds
        if not holds:
            return checks.Usage(
                redemptions=self.redemptions,
                per_contact=self.per_contact,
                per_code=self.per_code.get(code, 0),
                budget_spent=self.budget_spent,
            )
        return checks.Usage(
            redemptions=self.redemptions + len(holds),
            per_contact=WithHolds(self.per_contact, holds.per_contact),
            per_code=self.per_code.get(code, 0) + holds.per_code.get(code, 0),
            budget_spent=self.budget_spent + holds.budget,
        )
