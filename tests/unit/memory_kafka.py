"""An in-memory stand-in for the few Kafka client calls the writer engine makes
(`services.coupons.writer.clients.Clients`): a log per topic partition, transactions whose
records appear only when they commit (what a read_committed reader sees), a consumer group of
one member that is given every partition, and the group's committed offsets. Enough to drive
the engine's loop in a unit test; fencing, rebalances between members and failures of the
broker are the integration tests' (on a real broker)."""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Appended:
    """What a send's future gives, as aiokafka's RecordMetadata does."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Ended:
    """A transaction, once committed or aborted."""

    committed: bool
    records: int
    added_early: bool  # its partition added before its first send (begun ahead)
    open_s: float


class TransactionTimedOut(Exception):
    """What the broker's abort of a transaction left open too long comes to."""


class MemoryKafka:
    def __init__(self, partitions: int, transaction_timeout_s: float = 60.0) -> None:
        """A transaction open longer than `transaction_timeout_s` (the event loop's time) fails
        to commit, as the broker aborts it and fences its producer."""
        self.partitions = partitions
        self.transaction_timeout_s = transaction_timeout_s
        self.transactions: list[Ended] = []  # every transaction ended, in order
        self.last_ended: object | None = None  # the producer whose transaction ended last
        self.begun_after_own_end = 0
        """Transactions begun on the producer whose transaction ended last: a broker refuses
        them (CONCURRENT_TRANSACTIONS) until it has written that one's markers."""
        self.logs: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
        self.group_offsets: dict[tuple[str, TopicPartition], int] = {}
        self.stuck = False
        """From now on no transaction ends, and a producer with one in flight never stops: what
        aiokafka's producer once did after the broker's unclean restart."""
        self._changed = asyncio.Event()

    def append(
        self, topic: str, partition: int, value: bytes, key: bytes | None, headers: Headers
    ) -> Appended:
        tp = TopicPartition(topic, partition)
        offset = len(self.logs[tp])
        record = ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, 0, 0, headers)
        self.logs[tp].append(record)
        self._changed.set()
        self._changed = asyncio.Event()
        return Appended(topic, partition, offset)

    def records(self, topic: str) -> list[ConsumerRecord[Any, Any]]:
        """Every record of `topic`, partition by partition."""
        return [r for p in range(self.partitions) for r in self.logs[TopicPartition(topic, p)]]

    async def changed(self, timeout_s: float) -> None:
        """Return when a record is appended, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    # the `Clients` factory
    def group_reader(self, group_id: str) -> AIOKafkaConsumer:
        return cast(AIOKafkaConsumer, _GroupReader(self, group_id))

    def reader(self) -> AIOKafkaConsumer:
        return cast(AIOKafkaConsumer, _Reader(self))

    def producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        return cast(AIOKafkaProducer, _Producer(self))


class _Reader:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        self.positions = {tp: 0 for tp in tps}

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.kafka.logs[tp]) for tp in tps}

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        fetched = self._take(tps or tuple(self.positions), max_records)
        if not fetched:
            await self.kafka.changed(timeout_ms / 1000)
            fetched = self._take(tps or tuple(self.positions), max_records)
        return fetched

    def _take(
        self, tps: Iterable[TopicPartition], max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        fetched = {}
        budget = max_records
        for tp in tps:
            records = self.kafka.logs[tp][self.positions[tp] :][:budget]
            if budget is not None:
                budget -= len(records)
            if records:
                fetched[tp] = records
                self.positions[tp] += len(records)
        return fetched


class _GroupReader(_Reader):
    """The only member of its group: every partition of the topic is assigned to it on its
    first fetch, through its rebalance listener, as the group coordinator would."""

    def __init__(self, kafka: MemoryKafka, group_id: str) -> None:
        super().__init__(kafka)
        self.group_id = group_id
        self.paused: set[TopicPartition] = set()
        self.topic: str | None = None
        self.listener: ConsumerRebalanceListener | None = None

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        [self.topic] = topics
        self.listener = listener

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.kafka.group_offsets.get((self.group_id, tp))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def _take(
        self, tps: Iterable[TopicPartition], max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        return super()._take([tp for tp in tps if tp not in self.paused], max_records)

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        if not self.positions:
            assert self.topic is not None and self.listener is not None
            assigned = {TopicPartition(self.topic, p) for p in range(self.kafka.partitions)}
            self.positions = {tp: 0 for tp in assigned}
            await self.listener.on_partitions_assigned(assigned)
        return await super().getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)


class _Transaction:
    def __init__(self, producer: "_Producer") -> None:
        self.producer = producer

    async def __aenter__(self) -> "_Transaction":
        assert self.producer.pending is None, "one transaction at a time"
        if self.producer.kafka.last_ended is self.producer:
            self.producer.kafka.begun_after_own_end += 1
        self.producer.pending = []
        self.producer.offsets = []
        self.producer._txn_manager.added_early = False
        self.started = asyncio.get_running_loop().time()
        return self

    async def __aexit__(self, failed: type[BaseException] | None, *_: Any) -> None:
        if self.producer.kafka.stuck:
            self.producer.stuck = True
            await asyncio.Event().wait()
        await asyncio.sleep(0)  # EndTxn's round trip: the writer's other tasks run meanwhile
        pending, self.producer.pending = self.producer.pending or [], None
        offsets, self.producer.offsets = self.producer.offsets, []
        kafka = self.producer.kafka
        open_s = asyncio.get_running_loop().time() - self.started
        early = self.producer._txn_manager.added_early
        committed = failed is None and open_s <= kafka.transaction_timeout_s
        kafka.transactions.append(Ended(committed, len(pending), early, open_s))
        kafka.last_ended = self.producer
        timed_out = failed is None and open_s > kafka.transaction_timeout_s
        if failed is not None or timed_out:  # aborted: nothing of it is ever seen
            for *_, acked in pending:
                acked.cancel()
            if timed_out:
                raise TransactionTimedOut(f"open {open_s:.2f} s")
            return
        for topic, partition, value, key, headers, acked in pending:
            acked.set_result(self.producer.kafka.append(topic, partition, value, key, headers))
        self.producer.kafka.group_offsets.update(offsets)


class _TransactionManager:
    """`kafka_private.add_partition_early` reaches aiokafka's transaction manager: here a
    partition needs no adding, it is only noted."""

    added_early = False

    def maybe_add_partition_to_txn(self, tp: TopicPartition) -> None:
        self.added_early = True


class _Producer:
    def __init__(self, kafka: MemoryKafka) -> None:
        self.kafka = kafka
        self.pending: list[tuple[str, int, bytes, bytes | None, Headers, asyncio.Future[Any]]]
        self.pending = None  # type: ignore[assignment]
        self.offsets: list[tuple[tuple[str, TopicPartition], int]] = []
        self._txn_manager = _TransactionManager()
        self.stuck = False

    async def start(self) -> None: ...

    async def stop(self) -> None:
        if self.stuck:  # aiokafka's waits for what it holds to be delivered
            await asyncio.Event().wait()

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[Any]:
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        where = 0 if partition is None else partition
        if self.pending is None:
            acked.set_result(self.kafka.append(topic, where, value, key, headers or []))
        else:
            self.pending.append((topic, where, value, key, headers or [], acked))
        return acked

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, int], group_id: str
    ) -> None:
        assert self.pending is not None, "inside a transaction"
        self.offsets.extend(((group_id, tp), at) for tp, at in offsets.items())
