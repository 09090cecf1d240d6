"""The aiokafka internals `services/coupons/writer/kafka_private.py` relies on are still there
and shaped as it expects: an aiokafka upgrade that moves them fails here, loudly, not in a
decider under load."""

import inspect

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer import sender
from aiokafka.producer.transaction_manager import TransactionManager

from services.coupons.writer import kafka_private


def test_the_checked_aiokafka_version_is_installed() -> None:
    major_minor = ".".join(kafka_private.version().split(".")[:2])
    assert major_minor in kafka_private.CHECKED_VERSIONS, (
        f"aiokafka {kafka_private.version()}: check writer/kafka_private.py against it, then "
        "add it to CHECKED_VERSIONS"
    )


def test_the_sender_backoff_override_exists_and_is_set() -> None:
    assert hasattr(sender, "BACKOFF_OVERRIDE")
    kafka_private.retry_concurrent_transactions_quickly()
    assert sender.BACKOFF_OVERRIDE == 0.002


def test_adding_a_partition_early_goes_through_the_transaction_manager() -> None:
    assert list(inspect.signature(TransactionManager.maybe_add_partition_to_txn).parameters) == [
        "self",
        "tp",
    ]
    producer = AIOKafkaProducer.__new__(AIOKafkaProducer)  # not started: no connection
    added: list[TopicPartition] = []

    class Manager:
        def maybe_add_partition_to_txn(self, tp: TopicPartition) -> None:
            added.append(tp)

    producer._txn_manager = Manager()
    kafka_private.add_partition_early(producer, TopicPartition("events", 2))
    assert added == [TopicPartition("events", 2)]
    assert "_txn_manager" in inspect.getsource(AIOKafkaProducer.__init__)
