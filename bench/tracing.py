"""`coupons serve` with timestamps at each step of a redemption, for `bench/redemption_trace.py`.

    COUPONS_TRACE_FILE=trace.jsonl python bench/tracing.py   (one worker: the patches live in
    this process)

Nothing in the service changes: before serving, this wraps at run time the methods a
redemption passes through and records, with `time.time()`, when each was entered and left:

- the ASGI app (`POST /v1/redemptions`, by Idempotency-Key): the request's arrival and the
  start of its answer;
- `CommandGateway.decide`: the command handed to its decider, and the reply received;
- the writer engine (`services/coupons/writer`): `Decisions._decide_one` (decided),
  `transactions.begin` (a transaction begun ahead, with the add-partition round trip),
  `Writers._commit` (a batch's transaction and its replies), `Replies.send` (each reply);
- `AIOKafkaClient.send`: every request to the broker (AddPartitionsToTxn, Produce, EndTxn,
  Fetch...) from the client's side, with the producer's transactional id.

`BENCH_LINGER_MS=N` makes every producer of the service linger N ms instead of the project's
setting: an experiment, to compare with the same trace without it.

The records are written as JSON lines when the app shuts down (the end of its lifespan). A
benchmark tool, not a part of the service: the private methods it wraps are the decider's of
today; a name that no longer exists is reported on stderr and left out of the trace.
"""

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from aiokafka.client import AIOKafkaClient

from services.coupons import app as composition
from services.coupons import cli
from services.coupons.bus import gateway, kafka
from services.coupons.writer import batch, engine, replies, transactions

RECORDS: list[tuple[Any, ...]] = []


def _wrap(owner: Any, name: str, around: Callable[[Any], Any]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        print(f"tracing: {owner.__name__}.{name} not found, not traced", file=sys.stderr)
        return
    setattr(owner, name, functools.wraps(original)(around(original)))


def _http(app: Any) -> Any:
    async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # uvicorn ends with the signal it got: no atexit

            async def stopping(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    _write()
                await send(message)

            await app(scope, receive, stopping)
            return
        if scope["type"] != "http" or scope["path"] != "/v1/redemptions":
            await app(scope, receive, send)
            return
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        arrived = time.time()

        async def answering(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                RECORDS.append(("http", key, arrived, time.time()))
            await send(message)

        await app(scope, receive, answering)

    return traced


def _gateway_decide(original: Any) -> Any:
    async def decide(self: Any, command: Any) -> Any:
        entered = time.time()
        try:
            return await original(self, command)
        finally:
            RECORDS.append(
                ("gateway", command.idempotency_key, str(command.id), entered, time.time())
            )

    return decide


def _decide_one(original: Any) -> Any:
    def decide_one(
        self: Any, state: Any, partition: int, record: Any, command: Any, batch: Any
    ) -> Any:
        outcome = original(self, state, partition, record, command, batch)
        RECORDS.append(("decided", str(command.id), time.time()))
        return outcome

    return decide_one


def _begin(original: Any) -> Any:
    async def begin(producer: Any, events: Any) -> Any:
        entered = time.time()
        found = await original(producer, events)
        tid = producer._txn_manager.transactional_id
        RECORDS.append(("begin", tid, entered, time.time()))
        return found

    return begin


def _commit(original: Any) -> Any:
    async def commit(self: Any, writer: Any, batch: Any, *taken: Any) -> None:
        # the producer it takes: passed to it (now), or the next turn's (before issue 21)
        producer = taken[0] if taken else writer.next_turn()
        tid = None if producer is None else producer._txn_manager.transactional_id
        commands = [str(outcome.command.id) for outcome in batch.outcomes]
        entered = time.time()
        try:
            await original(self, writer, batch, *taken)
        finally:
            RECORDS.append(("commit", tid, commands, entered, time.time()))

    return commit


def _reply(original: Any) -> Any:
    async def reply(self: Any, outcome: Any, memo: Any) -> None:
        RECORDS.append(("reply", str(outcome.command.id), time.time()))
        await original(self, outcome, memo)

    return reply


def _kafka_send(original: Any) -> Any:
    async def send(self: Any, node_id: Any, request: Any, **kwargs: Any) -> Any:
        entered = time.time()
        try:
            return await original(self, node_id, request, **kwargs)
        finally:
            tid = getattr(request, "_transactional_id", None)
            name = type(request).__name__
            RECORDS.append(("kafka", name, tid, entered, time.time()))

    return send


def _write() -> None:
    with open(os.environ["COUPONS_TRACE_FILE"], "w") as out:
        for record in RECORDS:
            out.write(json.dumps(record) + "\n")


def _linger(milliseconds: int) -> None:
    """Every producer the service makes with `linger_ms` of `milliseconds` (an experiment:
    `BENCH_LINGER_MS`)."""
    made = kafka.AIOKafkaProducer
    kafka.AIOKafkaProducer = lambda **options: made(**{**options, "linger_ms": milliseconds})


def install() -> None:
    if linger := os.environ.get("BENCH_LINGER_MS"):
        _linger(int(linger))
    create_app = composition.create_app  # `coupons serve` imports it from there when it starts
    composition.create_app = lambda settings: _http(create_app(settings))
    _wrap(gateway.CommandGateway, "decide", _gateway_decide)
    _wrap(batch.Decisions, "_decide_one", _decide_one)
    _wrap(transactions, "begin", _begin)
    _wrap(engine.Writers, "_commit", _commit)
    _wrap(replies.Replies, "send", _reply)
    _wrap(AIOKafkaClient, "send", _kafka_send)


if __name__ == "__main__":
    install()
    sys.argv[1:] = ["serve"]
    cli.main()
