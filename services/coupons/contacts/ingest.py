"""Appends contact events posted over HTTP to `growthos.contact-events.v1`, keyed by contact
id, with acks=all: `append` returns once every event is durable."""

import asyncio

from aiokafka import AIOKafkaProducer

from contracts.contacts import ContactEvent
from contracts.topics import Topic
from services.coupons.bus import kafka


class ContactIngest:
    def __init__(self, bootstrap: str, topic: Topic) -> None:
        self._topic = topic.name
        self._producer: AIOKafkaProducer = kafka.producer(bootstrap)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def append(self, events: tuple[ContactEvent, ...]) -> None:
        sent = [
            await self._producer.send(
                self._topic, e.model_dump_json().encode(), key=e.contact_id.encode()
            )
            for e in events
        ]
        await asyncio.gather(*sent)
