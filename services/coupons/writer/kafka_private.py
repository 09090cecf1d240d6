"""The one place that reaches into aiokafka's internals, each use with why and the versions
it was checked against. `tests/unit/test_kafka_private.py` fails loudly when an aiokafka
upgrade moves or renames what is used here.

Checked against aiokafka 0.12 to 0.14.
"""

import aiokafka
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.producer import sender

CHECKED_VERSIONS = ("0.12", "0.13", "0.14")


def retry_concurrent_transactions_quickly() -> None:
    """A transaction begun while the broker still writes the previous one's commit markers is
    refused as CONCURRENT_TRANSACTIONS (KAFKA-5477), and aiokafka retries it after a fixed
    20 ms (`sender.BACKOFF_OVERRIDE`): a busy writer, whose transactions are back to back,
    would then wait 20 ms on every one. The markers take about a millisecond on a broker, so
    retry after 2 ms. Called once, when the first writer starts."""
    sender.BACKOFF_OVERRIDE = 0.002


def add_partition_early(producer: AIOKafkaProducer, tp: TopicPartition) -> None:
    """Add `tp` to the producer's open transaction now, ahead of its first send: aiokafka adds
    a partition only with a record's send, and the writer begins its next transaction while
    the one before commits, so that this round trip overlaps it (`writer.transactions`)."""
    producer._txn_manager.maybe_add_partition_to_txn(tp)


def version() -> str:
    return str(aiokafka.__version__)
