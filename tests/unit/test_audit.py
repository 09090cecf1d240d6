"""The checks `make chaos`, `make replicas` and test_replicas rely on: each finds what it must
(a check that cannot fail proves nothing)."""

from contracts.events import CodeRedeemed
from services.coupons.bus import kafka
from services.devstack.audit import exactly_once, per_contact_exact
from services.devstack.replicas import RetryingLoad, campaign_ids


def test_exactly_once_finds_missing_doubled_and_extra() -> None:
    assert exactly_once("x", {"a", "b"}, ["a", "b"], ["b", "a"]) == []
    found = exactly_once("x", {"a", "b", "c"}, ["a", "a", "d"], ["a", "b", "c"])
    assert found == [
        "x: 2 accepted but not in the event log",
        "x: 1 more than once in the event log",
        "x: 1 in the event log but never accepted",
    ]
    assert exactly_once("x", {"a"}, ["a"], []) == ["x: 1 accepted but not in the ledger"]


def redeemed(contact: str, n: int) -> CodeRedeemed:
    return CodeRedeemed(
        campaign_id="c",
        redemption_id=f"r{n}",
        code="CODE",
        contact_id=contact,
        order_ref=f"o{n}",
        currency="EUR",
        amount=2000,
        discount=100,
        total=1900,
    )


def test_per_contact_exact_finds_a_contact_over_its_limit() -> None:
    once = [redeemed("ada", 1), redeemed("bob", 2)]
    assert per_contact_exact("x", once, 1) == []
    assert per_contact_exact("x", [*once, redeemed("ada", 3)], 1) == [
        "x: 1 contacts over their limit of 1"
    ]


def test_campaign_ids_land_on_every_partition() -> None:
    ids = campaign_ids(6, 2, "t")
    partitions = [kafka.partition_for(cid, 6) for cid in ids]
    assert sorted(partitions) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_longest_pause_is_the_widest_gap_of_any_campaign() -> None:
    load = RetryingLoad(["http://x"], "key", ["A", "B"], key_prefix="k-")
    # keys 0, 2, 4 redeem A; 1, 3 redeem B
    load.accepted = {"k-0": ("r0", 1.0), "k-2": ("r2", 2.0), "k-4": ("r4", 9.0)}
    load.accepted |= {"k-1": ("r1", 1.5), "k-3": ("r3", 2.5)}
    assert load.longest_pause(0.0, 10.0) == 7.5  # B: nothing from 2.5 to 10
    assert load.codes_accepted_since(2.2) == {"A", "B"}
    assert load.codes_accepted_since(3.0) == {"A"}
    assert load.rate(0.0, 10.0) == 0.5
