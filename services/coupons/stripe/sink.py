"""Where verified Stripe webhook events go: their Kafka topic, keyed by Stripe event id."""

from aiokafka import AIOKafkaProducer

from contracts.topics import Topic
from services.coupons.bus import kafka


class WebhookSink:
    """Appends verified Stripe events to their topic, durably."""

    def __init__(self, bootstrap: str, topic: Topic, partitions: int) -> None:
        self._topic = topic
        self._partitions = partitions
        self._producer: AIOKafkaProducer = kafka.producer(bootstrap)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def append(self, event_id: str, event_type: str, body: bytes) -> None:
        await self._producer.send_and_wait(
            self._topic.name,
            body,
            key=event_id.encode(),
            partition=kafka.partition_for(event_id, self._partitions),
            headers=[("type", event_type.encode())],
        )
