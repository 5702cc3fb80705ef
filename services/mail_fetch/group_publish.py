"""Group publishing: the batches of every mailbox a worker is fetching at once go out together.

Each mailbox's delivery publishes its batch and waits for the broker. Many such calls at once would each
wait for the partition's in-flight batch to drain, and aiokafka's `send_batch` then gives up early with
KafkaTimeoutError (its wait loop takes the elapsed time off the timeout again on every turn). So one
call publishes at a time, and a call that finds others queued behind it takes them along: commits are
grouped as a database groups its log writes, fewer and larger record batches go out, and every caller
still returns only once the broker has its own commands.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from schemas.base import Message
from services.mail_fetch.delivery import Publisher


class GroupPublisher:
    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self._lock = asyncio.Lock()
        self._queued: dict[str, list[tuple[list, asyncio.Future]]] = {}

    async def publish(self, topic: str, key: str | None, message: Message | None) -> None:
        await self.publisher.publish(topic, key, message)

    async def publish_many(self, topic: str, items: Iterable[tuple[str | None, Message]]) -> int:
        items = list(items)
        mine = asyncio.get_running_loop().create_future()
        self._queued.setdefault(topic, []).append((items, mine))
        async with self._lock:
            if not mine.done():  # nobody took it along: publish it, with whatever queued behind it
                await self._publish_queued(topic, mine)
                return len(items)
        return mine.result()

    async def _publish_queued(self, topic: str, mine: asyncio.Future) -> None:
        taken = self._queued.pop(topic, [])
        try:
            await self.publisher.publish_many(topic, [item for items, _ in taken for item in items])
        except BaseException as exc:  # every caller of the group fails with it, and fetches again
            failure = exc if isinstance(exc, Exception) else RuntimeError("the grouped publish was cancelled")
            for _, done in taken:
                if done is not mine:
                    done.set_exception(failure)
            raise
        for items, done in taken:
            if done is not mine:
                done.set_result(len(items))
