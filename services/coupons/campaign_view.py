"""Every campaign's state in memory, folded from the event topic with the decider's own
`evolve`: what validations read, so a validation touches neither PostgreSQL nor Kafka.

The view reads committed events only, from the beginning of every partition, in each
partition's order, so it holds exactly what the decider held some moments ago. A validation
is advice (it changes nothing); the redemption is decided by the campaign's writer, against
the state as of its own turn.
"""

import asyncio

import structlog
from aiokafka import TopicPartition

from contracts.codec import EVENTS, MalformedMessage
from contracts.events import CampaignDefined, CodesAdded
from contracts.topics import Topics
from services.coupons.bus import kafka
from services.coupons.domain import campaign as aggregate

log = structlog.get_logger(__name__)


class ViewNotCaughtUp(TimeoutError):
    pass


class CampaignView:
    def __init__(self, bootstrap: str, topics: Topics, partitions: int) -> None:
        self._bootstrap = bootstrap
        self._topic = topics.events.name
        self._partitions = partitions
        self._campaigns: dict[str, aggregate.Campaign] = {}
        self._owners: dict[str, str] = {}  # code -> campaign id
        self._next: dict[int, int] = {}  # partition -> next offset to fold
        self._advanced = asyncio.Condition()

    def campaign_of(self, code: str) -> aggregate.Campaign | None:
        campaign_id = self._owners.get(code)
        return None if campaign_id is None else self._campaigns.get(campaign_id)

    def reached(self, partition: int, offset: int) -> bool:
        return self._next.get(partition, 0) > offset

    async def wait(self, partition: int, offset: int, timeout_s: float) -> None:
        """Return once the event at (partition, offset) is folded in."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._advanced:
                    await self._advanced.wait_for(lambda: self.reached(partition, offset))
        except TimeoutError as error:
            raise ViewNotCaughtUp(f"the view has not reached {partition}:{offset}") from error

    async def wait_for_code(self, code: str, timeout_s: float) -> aggregate.Campaign | None:
        """The campaign of a code that exists but may not be folded in yet; None if it is not
        within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._advanced:
                    await self._advanced.wait_for(lambda: self.campaign_of(code) is not None)
        except TimeoutError:
            return None
        return self.campaign_of(code)

    async def run(self) -> None:
        consumer = kafka.reader(self._bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._campaigns.clear()
            self._owners.clear()
            self._next.clear()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        self._fold(record.value)
                    self._next[tp.partition] = records[-1].offset + 1
                if batches:
                    async with self._advanced:
                        self._advanced.notify_all()
        finally:
            await consumer.stop()

    def _fold(self, raw: bytes | None) -> None:
        try:
            envelope = EVENTS.decode(raw)
        except MalformedMessage as error:
            log.warning("view.unreadable_event", reason=error.reason)
            return
        event = envelope.data
        folded = aggregate.evolve(self._campaigns.get(envelope.key), event, envelope.occurred_at)
        if folded is None:
            return
        self._campaigns[envelope.key] = folded
        match event:
            case CampaignDefined(code=str(code)):
                self._owners[code] = envelope.key
            case CodesAdded():
                self._owners.update(dict.fromkeys(event.codes, envelope.key))
