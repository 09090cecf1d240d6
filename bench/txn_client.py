"""The writer's Kafka transaction, client against client: aiokafka and librdkafka (confluent-kafka).

    python bench/txn_client.py [--rates 0,50,200,500] [--seconds 10] [--runs 3]

One writer on one event partition commits the redemptions that arrive, as the writer engine
does (`services/coupons/writer`): whatever waits when no transaction is in flight goes into
the next one (one record each below saturation), a transaction at a time, a pair of
transactional producers taking turns. A record is what a redemption's transaction holds
(the `CodeRedeemed` event, about 700 bytes, its `type` and `consumed` headers; the reply is
answered in process, outside the transaction). Rate 0 is the closed loop: the next record
arrives when the one before is committed. Each client, alternated run after run:

- `aiokafka`: the engine's way, the next transaction begun ahead on the other producer with
  the event partition added (`writer.transactions.begin`): a batch pays Produce and EndTxn.
- `aiokafka-plain`: the same without the transaction begun ahead: begin, add the partition
  with the first send, Produce, EndTxn, as `confluent` does.
- `aiokafka-trio`: as `aiokafka`, with three producers taking turns: the transaction begun
  ahead is on the producer that committed two transactions ago, not the one before, whose
  commit markers may still be written (its AddPartitionsToTxn is then refused with
  CONCURRENT_TRANSACTIONS and retried after a backoff, while the batch waits for it).
- `confluent`: librdkafka through `confluent_kafka.Producer`; `begin_transaction` and
  `produce` (non-blocking) on the event loop, `commit_transaction` (which flushes, then
  EndTxn) in a worker thread. librdkafka adds a partition only with a record produced to it,
  so its transaction pays AddPartitionsToTxn too, unless it speaks transaction protocol v2.
- `confluent-aio`: confluent-kafka's own asyncio producer (`confluent_kafka.aio.AIOProducer`,
  blocking calls offloaded to its thread pool). It refuses headers (`NotImplementedError`), so
  its records go without them: for comparison only, it cannot carry the writer's events.

`--work-us N` holds the event loop for N µs at each arrival (the service's own work on it:
HTTP, deciding), so that a client whose steps between requests run on the loop waits behind
it, as in the service; open loop only.

Printed per client and rate: per-record latency (arrival to its transaction's commit
answered) and per-transaction time (the batch taken to commit answered), p50 / p99 in ms,
and the CPU this process spent per transaction (every thread: librdkafka's too), medians
over the runs, with the load average at each run; for aiokafka, each run's AddPartitionsToTxn
requests per transaction (above 1: adds refused with CONCURRENT_TRANSACTIONS and sent again).
`--probe` instead runs transactions with each client's requests logged, and prints which
Kafka requests (and versions) a transaction sends (aiokafka's: per transaction, 200 back to
back, where an AddPartitionsToTxn refused with CONCURRENT_TRANSACTIONS is sent again), and
the broker's finalized `transaction.version`.

Kafka as `bench/checkout.py` provisions it (BENCH_KAFKA_PORT, BENCH_STATE_DIR), unless
KAFKA_BOOTSTRAP_SERVERS is set.
"""

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from checkout import KAFKA_PORT, PG_PORT
from confluent_kafka import Producer
from confluent_kafka.aio import AIOProducer

from services.coupons.bus import kafka
from services.coupons.writer import kafka_private
from services.devstack.stack import default_state_dir, provisioned

CLIENTS = ("aiokafka", "aiokafka-plain", "aiokafka-trio", "confluent", "confluent-aio")
VALUE = b"x" * 700
HEADERS = [("type", b"coupon.code_redeemed.v1"), ("consumed", b"123456")]


class Writer(Protocol):
    async def start(self) -> None: ...
    async def commit(self, records: int) -> None: ...
    async def stop(self) -> None: ...


class Aiokafka:
    """The engine's producers (`bus.kafka.producer`), the engine's turns and begun transaction."""

    def __init__(
        self, bootstrap: str, topic: str, tid: str, ahead: bool = True, producers: int = 2
    ) -> None:
        self.pair = tuple(
            kafka.producer(bootstrap, transactional_id=f"{tid}.{n}") for n in range(producers)
        )
        self.events = TopicPartition(topic, 0)
        self.turn = 0
        self.ahead = ahead
        self.begun: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        kafka_private.retry_concurrent_transactions_quickly()
        for producer in self.pair:
            await producer.start()
        if self.ahead:
            self.begun = asyncio.create_task(self._begin(self.pair[self.turn]))

    async def _begin(self, producer: AIOKafkaProducer) -> Any:
        transaction = producer.transaction()
        await transaction.__aenter__()
        if self.ahead:
            kafka_private.add_partition_early(producer, self.events)
        return transaction

    async def commit(self, records: int) -> None:
        producer = self.pair[self.turn]
        self.turn = (self.turn + 1) % len(self.pair)
        if self.begun is None:
            transaction = await self._begin(producer)
        else:
            begun = self.begun
            self.begun = asyncio.create_task(self._begin(self.pair[self.turn]))
            transaction = await begun
        acks = [
            await producer.send(self.events.topic, VALUE, key=b"k", partition=0, headers=HEADERS)
            for _ in range(records)
        ]
        await transaction.__aexit__(None, None, None)
        for ack in acks:
            (await ack).offset  # noqa: B018 - the offsets the memo takes

    async def stop(self) -> None:
        if self.begun is not None:
            with contextlib.suppress(Exception):
                await (await self.begun).__aexit__(RuntimeError, RuntimeError(), None)
        for producer in self.pair:
            await producer.stop()


def _librdkafka_conf(bootstrap: str, tid: str, **extra: Any) -> dict[str, Any]:
    """The project's producer settings (`bus.kafka.producer`) in librdkafka's terms."""
    return {
        "bootstrap.servers": bootstrap,
        "transactional.id": tid,
        "acks": "all",
        "enable.idempotence": True,
        "transaction.timeout.ms": kafka.TRANSACTION_TIMEOUT_MS,
        "linger.ms": 1,
        "retry.backoff.ms": 5,
        "socket.nagle.disable": True,
        **extra,
    }


class Confluent:
    """librdkafka's producer; its blocking calls in one worker thread, off the event loop."""

    def __init__(self, bootstrap: str, topic: str, tid: str, **extra: Any) -> None:
        self.pair = tuple(
            Producer(_librdkafka_conf(bootstrap, f"{tid}.{n}", **extra)) for n in "ab"
        )
        self.topic = topic
        self.turn = 0
        self.thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.offsets: list[int] = []

    async def _call(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, call, *args)

    async def start(self) -> None:
        for producer in self.pair:
            await self._call(producer.init_transactions, 30)

    def _delivered(self, error: Any, message: Any) -> None:  # in the committing thread
        if error is not None:
            raise RuntimeError(error)
        self.offsets.append(message.offset())

    async def commit(self, records: int) -> None:
        producer = self.pair[self.turn]
        self.turn = 1 - self.turn
        producer.begin_transaction()  # local: nothing is sent
        for _ in range(records):
            producer.produce(
                self.topic, VALUE, b"k", partition=0, headers=HEADERS, on_delivery=self._delivered
            )
        await self._call(producer.commit_transaction, 30)  # flushes (delivery reports), EndTxn
        assert len(self.offsets) == records, "every record's offset reported by the commit"
        del self.offsets[:]

    async def stop(self) -> None:
        for producer in self.pair:
            await self._call(producer.flush, 10)
        self.thread.shutdown()


class ConfluentAio:
    """confluent-kafka's asyncio producer, records without headers (it refuses them)."""

    def __init__(self, bootstrap: str, topic: str, tid: str, **extra: Any) -> None:
        self.confs = [_librdkafka_conf(bootstrap, f"{tid}.{n}", **extra) for n in "ab"]
        self.topic = topic
        self.turn = 0
        self.pair: list[AIOProducer] = []

    async def start(self) -> None:
        self.pair = [AIOProducer(conf, max_workers=1, buffer_timeout=0) for conf in self.confs]
        for producer in self.pair:
            await producer.init_transactions(30)

    async def commit(self, records: int) -> None:
        producer = self.pair[self.turn]
        self.turn = 1 - self.turn
        await producer.begin_transaction()
        acks = [
            await producer.produce(self.topic, VALUE, b"k", partition=0) for _ in range(records)
        ]
        await producer.commit_transaction(30)
        for ack in acks:
            (await ack).offset()

    async def stop(self) -> None:
        for producer in self.pair:
            await producer.close()


def make(client: str, bootstrap: str, topic: str, **extra: Any) -> Writer:
    tid = f"bench.txn.{client}.{uuid.uuid4().hex[:8]}"
    if client.startswith("aiokafka"):
        producers = 3 if client == "aiokafka-trio" else 2
        return Aiokafka(bootstrap, topic, tid, client != "aiokafka-plain", producers)
    if client == "confluent":
        return Confluent(bootstrap, topic, tid, **extra)
    return ConfluentAio(bootstrap, topic, tid, **extra)


def busy(us: float) -> None:
    """Hold the event loop (and the GIL) for `us` microseconds, as a request's work does."""
    until = time.perf_counter() + us / 1e6
    while time.perf_counter() < until:
        pass


async def load(
    writer: Writer, rate: int, seconds: float, work_us: float = 0
) -> tuple[list[float], list[float], int]:
    """Redemptions arriving at `rate` a second (0: closed loop) for `seconds`, committed by
    `writer` as the engine commits: what waits goes into the next transaction; each arrival
    first holds the event loop for `work_us` (the service's work on it). Returns the
    per-record and per-transaction latencies (ms) and the transactions' count."""
    loop = asyncio.get_running_loop()
    waiting: list[float] = []  # arrival times
    arrived = asyncio.Event()
    records: list[float] = []
    transactions: list[float] = []
    start = loop.time()
    end = start + seconds

    async def arrivals() -> None:
        n = 0
        while (at := start + n / rate) < end:
            await asyncio.sleep(max(0.0, at - loop.time()))
            arrival = loop.time()
            busy(work_us)
            waiting.append(arrival)
            arrived.set()
            n += 1

    feeder = None if rate == 0 else asyncio.create_task(arrivals())
    while loop.time() < end or waiting:
        if rate == 0:
            waiting.append(loop.time())
        elif not waiting:
            arrived.clear()
            if feeder is not None and feeder.done():
                break
            await arrived.wait()
        batch, waiting[:] = waiting[:], []
        began = loop.time()
        await writer.commit(len(batch))
        done = loop.time()
        transactions.append((done - began) * 1000)
        records.extend((done - at) * 1000 for at in batch)
    if feeder is not None:
        await feeder
    return records, transactions, len(transactions)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def measure(args: argparse.Namespace, bootstrap: str) -> None:
    topic = f"bench.txn.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic)
    extra = dict(kv.split("=", 1) for kv in args.librdkafka)
    results: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    clients = args.clients.split(",")
    rates = [int(r) for r in args.rates.split(",")]
    for run in range(args.runs):
        order = clients if run % 2 == 0 else clients[::-1]
        for client in order:
            writer = make(client, bootstrap, topic, **extra)
            await writer.start()
            try:
                await load(writer, 0, args.warm_up)
                for rate in rates:
                    load_avg = os.getloadavg()[0]
                    cpu = time.process_time()
                    with aiokafka_requests() as sent:  # none for librdkafka's
                        records, txns, n = await load(writer, rate, args.seconds, args.work_us)
                    cpu_us = (time.process_time() - cpu) / n * 1e6
                    adds = sent["AddPartitionsToTxnRequest"] / n
                    row = (
                        percentile(records, 50),
                        percentile(records, 99),
                        percentile(txns, 50),
                        percentile(txns, 99),
                        len(records) / n,
                        cpu_us,
                    )
                    results.setdefault((client, rate), []).append(row)
                    print(
                        f"run {run + 1} {client:>13} rate {rate or 'closed':>6}: "
                        f"{len(records) / args.seconds:7.0f}/s, record p50 {row[0]:.2f} "
                        f"p99 {row[1]:.2f}, txn p50 {row[2]:.2f} p99 {row[3]:.2f} ms, "
                        f"{row[4]:.1f} records/txn, {cpu_us:.0f} µs CPU/txn, "
                        f"{adds:.2f} AddPartitionsToTxn/txn, load {load_avg:.2f}",
                        flush=True,
                    )
            finally:
                await writer.stop()
    print(f"\nmedians of {args.runs} runs, ms")
    print(
        "| client | rate | record p50 | record p99 | txn p50 | txn p99 | records/txn | CPU µs/txn |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for rate in rates:
        for client in clients:
            rows = results[client, rate]
            cols = [statistics.median(col) for col in zip(*rows, strict=True)]
            print(
                f"| {client} | {rate or 'closed loop'} | {cols[0]:.2f} | {cols[1]:.2f} | "
                f"{cols[2]:.2f} | {cols[3]:.2f} | {cols[4]:.1f} | {cols[5]:.0f} |"
            )


@contextlib.contextmanager
def aiokafka_requests() -> Iterator[Counter[str]]:
    """Count the requests aiokafka's clients send, by name and version."""
    sent: Counter[str] = Counter()
    original = AIOKafkaClient.send

    def send(self: Any, node_id: Any, request: Any, **kwargs: Any) -> Awaitable[Any]:
        sent[f"{type(request).__name__}"] += 1
        return original(self, node_id, request, **kwargs)

    AIOKafkaClient.send = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AIOKafkaClient.send = original  # type: ignore[method-assign]


async def probe(bootstrap: str, state_dir: Path) -> None:
    """Which requests a transaction sends, by client; the broker's transaction.version."""
    topic = f"bench.txn.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic)
    for client in ("aiokafka", "aiokafka-trio", "aiokafka-plain"):
        writer = make(client, bootstrap, topic)
        await writer.start()
        await writer.commit(1)
        with aiokafka_requests() as sent:
            for _ in range(200):  # back to back, as a busy writer's
                await writer.commit(1)
        await writer.stop()
        per = {name: round(n / 200, 2) for name, n in sent.items()}
        print(f"{client}, requests per transaction, 200 back to back:", per)
    lines: list[str] = []

    class Log:
        def log(self, level: int, fmt: str, *args: Any) -> None:
            lines.append(fmt % args if args else fmt)

    confluent = Confluent(bootstrap, topic, f"bench.txn.probe.{uuid.uuid4().hex[:8]}")
    await confluent.start()
    await confluent.commit(1)
    await confluent.stop()
    logged = Confluent(
        bootstrap, topic, f"bench.txn.probe.{uuid.uuid4().hex[:8]}", debug="protocol", logger=Log()
    )
    await logged.start()
    await logged.commit(1)
    del lines[:]
    await logged.commit(1)
    await logged.commit(1)
    await logged.stop()
    requests = Counter(
        f"{m[1]} v{m[2]}" for line in lines if (m := re.search(r"Sent (\w+)Request \(v(\d+)", line))
    )
    print("confluent-kafka, requests of two transactions:", dict(requests))
    broker_log = state_dir / "kafka" / "broker.log"
    if broker_log.exists():
        found = re.findall(r"transaction\.version=(\d+)", broker_log.read_text(errors="replace"))
        print("broker: finalized transaction.version =", found[-1] if found else "not logged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--rates", default="0,50,200,500", help="a second; 0: closed loop")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warm-up", type=float, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--librdkafka", nargs="*", default=[], help="extra settings, k=v")
    parser.add_argument(
        "--work-us", type=float, default=0, help="event loop held per arrival (open loop only)"
    )
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args()
    state_dir = Path(os.environ.get("BENCH_STATE_DIR") or default_state_dir() / "bench")
    with provisioned(
        state_dir, kafka_port=KAFKA_PORT, pg_port=PG_PORT, database="coupons_bench"
    ) as endpoints:
        bootstrap = endpoints.kafka_bootstrap_servers
        started = time.strftime("%H:%M:%S", time.gmtime())
        print(f"started {started} UTC, load average {os.getloadavg()}", flush=True)
        if args.probe:
            asyncio.run(probe(bootstrap, state_dir))
        else:
            asyncio.run(measure(args, bootstrap))


if __name__ == "__main__":
    main()
