"""The Kafka clients the writer engine makes, behind one small factory, so that a unit test can
drive the engine's loop with in-memory fakes (`tests/unit/test_writer_engine.py`) while the
service and the crash tests use the real broker."""

from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.coupons.bus import kafka


class Clients(Protocol):
    transaction_timeout_s: float
    """The transactional producers': the broker aborts a transaction open longer, and fences
    its producer."""

    def group_reader(self, group_id: str) -> AIOKafkaConsumer:
        """The consumer of the commands topic, in the writers' group."""
        ...

    def reader(self) -> AIOKafkaConsumer:
        """A consumer of committed events, without a group (to fold a partition)."""
        ...

    def producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        """acks=all; with a transactional id, one of a partition's three."""
        ...


class KafkaClients:
    """The real ones (`bus.kafka`'s factories, with the project's settings)."""

    def __init__(
        self, bootstrap: str, transaction_timeout_ms: int = kafka.TRANSACTION_TIMEOUT_MS
    ) -> None:
        self._bootstrap = bootstrap
        self._transaction_timeout_ms = transaction_timeout_ms
        self.transaction_timeout_s = transaction_timeout_ms / 1000

    def group_reader(self, group_id: str) -> AIOKafkaConsumer:
        return kafka.reader(self._bootstrap, group_id=group_id)

    def reader(self) -> AIOKafkaConsumer:
        return kafka.reader(self._bootstrap)

    def producer(self, transactional_id: str | None = None) -> AIOKafkaProducer:
        return kafka.producer(
            self._bootstrap,
            transactional_id=transactional_id,
            transaction_timeout_ms=self._transaction_timeout_ms,
        )
