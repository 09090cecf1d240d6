"""Every campaign's state in memory, folded from the event topic with the decider's own
`evolve`: what validations read, so a validation touches neither PostgreSQL nor Kafka.

The view reads committed events only, in each partition's order, from the partition's last
snapshot written by its decider (`writer.snapshots`: the campaigns only, not the memo) or from
the beginning, so it holds exactly what the decider held some moments ago. A validation
is advice (it changes nothing); the redemption is decided by the campaign's writer, against
the state as of its own turn.

A transaction the writer in this same process has just committed is handed over in memory
(`take_committed`), with the campaigns as they stand after it: the redemption it answers then
need not wait for the consumer to fetch, decode and fold its events (about 10 ms under load),
and the consumer skips them when they arrive. It is taken only when it follows exactly what
the view has folded; otherwise the consumer brings it as usual.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from contracts.codec import EVENTS, MalformedMessage
from contracts.envelope import Envelope
from contracts.events import CampaignDefined, CodeReserved, CodesAdded, Event
from contracts.topics import Topics
from services.coupons import long_folds, parked
from services.coupons.bus import kafka
from services.coupons.domain import campaign as aggregate
from services.coupons.writer.snapshots import Snapshots

log = structlog.get_logger(__name__)


class ViewNotCaughtUp(TimeoutError):
    pass


@dataclass
class _Folded:
    campaigns: dict[str, aggregate.Campaign] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # code -> campaign id
    reservations: dict[str, str] = field(default_factory=dict)  # reservation id -> campaign id
    next: dict[int, int] = field(default_factory=dict)  # partition -> next offset to fold
    last: dict[int, int] = field(default_factory=dict)  # partition -> last record's offset


class CampaignView:
    """Readers see the last view that caught up with the topic: after a restart the view is
    folded again aside and swapped in whole, so nobody sees a half-folded history."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        partitions: int,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._snapshots = snapshots
        self._topic = topics.events.name
        self._partitions = partitions
        self._live = _Folded()
        self.caught_up = False
        self._became_live = asyncio.Event()
        self._advanced = asyncio.Condition()

    def campaign_of(self, code: str) -> aggregate.Campaign | None:
        live = self._live
        campaign_id = live.owners.get(code)
        return None if campaign_id is None else live.campaigns.get(campaign_id)

    def campaign_of_reservation(self, reservation_id: str) -> aggregate.Campaign | None:
        campaign_id = self._live.reservations.get(reservation_id)
        return None if campaign_id is None else self._live.campaigns.get(campaign_id)

    async def wait_caught_up(self) -> None:
        """Return once the view has caught up with the log (at once, after that)."""
        await self._became_live.wait()

    def campaign(self, campaign_id: str) -> aggregate.Campaign | None:
        return self._live.campaigns.get(campaign_id)

    def folded(self) -> dict[int, int]:
        """The offset of the last event folded in, per partition."""
        return dict(self._live.last)

    def reached(self, partition: int, offset: int) -> bool:
        return self._live.next.get(partition, 0) > offset

    async def wait(self, partition: int, offset: int, timeout_s: float) -> None:
        """Return once the event at (partition, offset) is folded in."""
        await self.reach({partition: offset + 1}, timeout_s)

    async def reach(self, positions: dict[int, int], timeout_s: float) -> None:
        """Return once every partition is folded up to its position (the offset after the
        last event to fold)."""

        def folded() -> bool:
            return all(self.reached(p, at - 1) for p, at in positions.items())

        if folded():
            return  # usual in the deciding process: its view took the events before the reply
        try:
            async with asyncio.timeout(timeout_s):
                async with self._advanced:
                    await self._advanced.wait_for(folded)
        except TimeoutError as error:
            raise ViewNotCaughtUp(f"the view has not reached {positions}") from error

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

    async def take_committed(
        self,
        partition: int,
        offsets: tuple[int, int],
        events: Sequence[Envelope[Event]],
        campaigns: Mapping[str, aggregate.Campaign],
    ) -> None:
        """Fold a committed transaction of `partition`: its `events`, at `offsets` (first,
        last), and `campaigns`, the state of those it changed after it (the writer's own
        fold). Ignored unless the view has folded exactly up to `first`."""
        live, (first, last) = self._live, offsets
        if not self.caught_up or live.next.get(partition) != first:
            return
        live.campaigns.update(campaigns)
        for envelope in events:
            _index_codes(live, envelope)
        live.last[partition], live.next[partition] = last, last + 1
        async with self._advanced:
            self._advanced.notify_all()

    async def run(self) -> None:
        consumer = kafka.reader(self._bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            folding, folded, long_fold = _Folded(), 0, long_folds.LongFold()
            # side by side, as the decider's partitions are: one after another, the reads of
            # twenty million redemptions' snapshots took 6.5 s, after the decider's were done
            await asyncio.gather(*(self._start(consumer, folding, tp, ends[tp]) for tp in tps))
            # the first pass only reads the positions: a log with nothing to fold (a snapshot
            # at its end, or an empty one) is caught up at once, not after a poll's wait
            batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
            while True:
                for tp, records in batches.items():
                    taken = folding.next.get(tp.partition, 0)  # folded already, or handed over
                    for n, record in enumerate(records, 1):
                        if record.offset >= taken:
                            self._fold(folding, record.value)
                            folded += 1
                        if folding is not self._live and n % long_folds.SLICE == 0:  # catching up
                            await long_fold.folded(long_folds.SLICE, folding.campaigns)
                    folding.last[tp.partition] = max(
                        records[-1].offset, folding.last.get(tp.partition, -1)
                    )
                moved = False
                for tp in tps:
                    was = folding.next.get(tp.partition, 0)
                    folding.next[tp.partition] = at = max(await consumer.position(tp), was)
                    moved |= at != was
                if folding is not self._live and all(
                    folding.next[tp.partition] >= ends[tp] for tp in tps
                ):
                    self._live, self.caught_up = folding, True
                    self._became_live.set()
                    log.info("view.caught_up", campaigns=len(folding.campaigns), folded=folded)
                # a position moves past a transaction's marker with no event (an idle writer's
                # aborted transaction every 20 s): a `reach` of the log's end waits for that too
                if moved and folding is self._live:
                    async with self._advanced:
                        self._advanced.notify_all()
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        finally:
            await consumer.stop()

    async def _start(
        self, consumer: AIOKafkaConsumer, folding: _Folded, tp: TopicPartition, end: int
    ) -> None:
        """Start a partition from its last sound snapshot, else from its beginning."""
        loaded = None
        if self._snapshots is not None:
            loaded = await self._snapshots.load(tp.partition, end, memo=False)
        if loaded is None:
            await consumer.seek_to_beginning(tp)
            return
        for campaign in loaded.states.values():
            _index_campaign(folding, campaign)
        folding.campaigns.update(loaded.states)
        folding.next[tp.partition] = loaded.next_offset
        folding.last[tp.partition] = loaded.next_offset - 1
        consumer.seek(tp, loaded.next_offset)

    @staticmethod
    def _fold(folding: _Folded, raw: bytes | None) -> None:
        try:
            envelope = EVENTS.decode(raw)
        except MalformedMessage as error:
            log.warning("view.unreadable_event", reason=error.reason)
            parked.PARKED["campaign-view", error.reason] += 1
            return
        event, key = envelope.data, envelope.key
        try:
            folded = aggregate.evolve(folding.campaigns.get(key), event, envelope.occurred_at)
        except Exception as error:  # noqa: BLE001 - skipped and counted: the view goes on
            log.error("view.unfoldable_event", type=event.type, error=repr(error))
            parked.PARKED["campaign-view", "unfoldable_event"] += 1
            return
        if folded is None:
            return
        folding.campaigns[key] = folded
        _index_codes(folding, envelope)


def _index_campaign(folding: _Folded, campaign: aggregate.Campaign) -> None:
    """Index a campaign loaded whole (from a snapshot): its codes and live reservations."""
    if campaign.code is not None:
        folding.owners[campaign.code] = campaign.id
    for chunk in campaign.chunks:
        folding.owners.update(dict.fromkeys(chunk.codes, campaign.id))
    folding.reservations.update(dict.fromkeys(campaign.holds.reservations, campaign.id))


def _index_codes(folding: _Folded, envelope: Envelope[Event]) -> None:
    match envelope.data:
        case CampaignDefined(code=str(code)):
            folding.owners[code] = envelope.key
        case CodesAdded(codes=codes):
            folding.owners.update(dict.fromkeys(codes, envelope.key))
        case CodeReserved(reservation_id=reservation_id):
            folding.reservations[reservation_id] = envelope.key
