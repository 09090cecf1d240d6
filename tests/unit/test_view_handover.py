"""The campaign view takes a transaction committed by its own process's writer only when it
follows exactly what it has folded; otherwise its consumer brings the events."""

import asyncio

from contracts.envelope import Envelope
from contracts.events import CampaignDefined, Event
from contracts.money import AmountOff
from contracts.topics import declare
from services.coupons.campaign_view import CampaignView
from services.coupons.domain.campaign import evolve


def defined(code: str) -> Envelope[Event]:
    data = CampaignDefined(
        campaign_id=f"c-{code}",
        name=code,
        code=code,
        discount=AmountOff(amount_off=1, currency="EUR"),
    )
    return Envelope[Event](key=f"c-{code}", correlation_id="corr", data=data)


async def hand_over(view: CampaignView, first: int, event: Envelope[Event]) -> None:
    folded = evolve(None, event.data, event.occurred_at)
    assert folded is not None
    await view.take_committed(0, (first, first), [event], {event.key: folded})


def test_a_transaction_is_taken_only_right_after_what_the_view_folded() -> None:
    async def scenario() -> None:
        view = CampaignView("127.0.0.1:1", declare("t.", 1), 1)  # never started: no Kafka
        await hand_over(view, 0, defined("EARLY"))
        assert view.campaign_of("EARLY") is None, "not taken before the view has caught up"

        view.caught_up, view._live.next[0] = True, 7  # what the consumer folded: 0..6
        await hand_over(view, 9, defined("GAP"))
        assert view.campaign_of("GAP") is None and not view.reached(0, 9), "8 not folded yet"

        await hand_over(view, 7, defined("NEXT"))
        found = view.campaign_of("NEXT")
        assert found is not None and found.id == "c-NEXT"
        assert view.reached(0, 7) and view.folded() == {0: 7}

    asyncio.run(scenario())
