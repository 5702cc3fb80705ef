"""The bus: one producer for every service, and the faust app factory every worker starts from."""
from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable, Iterable

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka

from schemas.base import Message
from services.common.settings import Settings
from services.common.topics import TopicSpec

# Ingest takes request bodies up to 1 MiB, so one CRM change can be nearly that large once wrapped;
# producers allow twice that, so such a change can be re-keyed or dead-lettered without being refused.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


Records = list[tuple[bytes | None, bytes]]  # (key, value), encoded

_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a key, as the Java client and aiokafka's DefaultPartitioner compute it, taken a
    32-bit word at a time: aiokafka's byte-by-byte loop cost ~10 us a key, a quarter of what ingest spent
    on a CRM change (each has its own record key)."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * _M) & 0xFFFFFFFF)
    tail = data[words << 2:]
    if tail:
        if len(tail) == 3:
            h ^= tail[2] << 16
        if len(tail) >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


class Murmur2Partitioner:
    """Kafka's default partitioner (what aiokafka's DefaultPartitioner chooses, with `murmur2`): a keyed
    record goes where any Kafka client would put it, a keyless one to a random available partition."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


class GroupedSends:
    """One batch send at a time per topic; a send that finds others queued behind it takes them along.

    Many concurrent `send_batch` calls each wait for the partition's in-flight batch to drain, and
    aiokafka then gives up early with a false KafkaTimeoutError (its wait loop takes the elapsed time
    off the timeout again on every turn). Serialising the sends avoids that, and grouping them keeps
    the throughput: commits are grouped as a database groups its log writes, fewer and larger record
    batches go out, and every caller still returns only once the broker has its own records. A failed
    send fails every caller of its group (each then retries its own).
    """

    def __init__(self, send: Callable[[str, Records], Awaitable[None]]):
        self._send = send
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, list[tuple[Records, asyncio.Future]]] = {}

    async def send(self, topic: str, records: Records) -> int:
        mine = asyncio.get_running_loop().create_future()
        self._queued.setdefault(topic, []).append((records, mine))
        async with self._locks.setdefault(topic, asyncio.Lock()):
            if not mine.done():  # nobody took it along: send it, with whatever queued behind it
                await self._send_queued(topic, mine)
                return len(records)
        return mine.result()

    async def _send_queued(self, topic: str, mine: asyncio.Future) -> None:
        taken = self._queued.pop(topic, [])
        try:
            await self._send(topic, [record for records, _ in taken for record in records])
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("the grouped send was cancelled")
            for _, done in taken:
                if done is not mine:
                    done.set_exception(failure)
            raise
        for records, done in taken:
            if done is not mine:
                done.set_result(len(records))


class Bus:
    """Publishes schema models. `publish*` returns only once the broker has the messages (acks=all)."""

    def __init__(self, settings: Settings, client_id: str = "crmsync"):
        # publish_many chooses partitions as the producer does, so a key lands alike either way
        self._partitioner = Murmur2Partitioner()
        # enable_idempotence stays off: idempotence comes from our own keys (and Tansu lacks it).
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            linger_ms=1,
            max_batch_size=256 * 1024,
            request_timeout_ms=15_000,
            enable_idempotence=False,
            max_request_size=MAX_MESSAGE_BYTES,
            partitioner=self._partitioner,
        )
        self._groups = GroupedSends(self._send_records)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, key: str | None, message: Message | None) -> None:
        """Publish one message; None is a tombstone (compacted topics forget the key)."""
        value = message.to_bytes() if message is not None else None
        await self._producer.send_and_wait(topic, value=value, key=key.encode() if key else None)

    async def publish_many(self, topic: str, items: Iterable[tuple[str | None, Message]]) -> int:
        """Publish a batch and wait for all of it: one record batch per partition, not one send per message.

        Partitions are chosen by the same murmur2 partitioner `publish` uses, so a key lands on the
        same partition whichever way it is sent. Concurrent calls are grouped (GroupedSends): one
        goes out at a time and takes along those queued behind it.
        """
        return await self.publish_encoded(topic, [(key.encode() if key else None, message.to_bytes())
                                                  for key, message in items])

    async def publish_encoded(self, topic: str, records: Records) -> int:
        """publish_many for values already encoded: for a hot path that builds a schema's JSON itself."""
        return await self._groups.send(topic, records)

    async def _send_records(self, topic: str, records: Records) -> None:
        partitions = sorted(await self._producer.partitions_for(topic))
        by_partition: dict[int, Records] = {}
        chosen: dict[bytes | None, int] = {}  # murmur2 is Python: once per key, and a batch repeats keys
        for raw_key, value in records:
            partition = chosen.get(raw_key)
            if partition is None or raw_key is None:  # a keyless record goes to a random partition each time
                partition = chosen[raw_key] = self._partitioner(raw_key, partitions, partitions)
            by_partition.setdefault(partition, []).append((raw_key, value))
        futures = []
        for partition, in_partition in by_partition.items():
            batch = self._producer.create_batch()
            for raw_key, value in in_partition:
                if batch.append(key=raw_key, value=value, timestamp=None) is None:
                    futures.append(await self._producer.send_batch(batch, topic, partition=partition))
                    batch = self._producer.create_batch()
                    if batch.append(key=raw_key, value=value, timestamp=None) is None:
                        raise ValueError(f"a message of {len(value)} bytes exceeds the producer's batch size")
            futures.append(await self._producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key)

    async def reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the broker answers a metadata request."""
        try:
            client = self._producer.client
            return bool(await asyncio.wait_for(client.fetch_all_metadata(), timeout_s))
        except (KafkaError, OSError, TimeoutError):
            return False


def faust_broker_url(bootstrap_servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip())


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: _Transport):
        consumer = super()._create_worker_consumer(transport)
        # faust fixes fetch_max_wait_ms at 1500 and offers no setting; the consumer reads it only at start.
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with our fetch wait: how long the broker may hold a fetch that finds no
    new record. Kafka answers as soon as a record arrives; Tansu (the embedded broker) holds the fetch the
    whole time even then, so on it every hop between two workers took up to faust's 1.5 s."""

    Consumer = _Consumer

    def __init__(self, url, app, fetch_max_wait_ms: int):
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms


def create_faust_app(name: str, settings: Settings, **overrides) -> faust.App:
    """A faust app wired to the configured cluster, with our consumer timing and no local state on disk.

    Topics are created by `ensure_topics` at start, not declared by faust, so partitions and
    compaction are the registry's. Values are raw bytes: models are decoded by the message handler,
    where a poison message can be dead-lettered instead of crashing the stream.
    """
    options = {
        "broker": faust_broker_url(settings.kafka_bootstrap_servers),
        "store": "memory://",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "topic_partitions": settings.topic_partitions,
        "web_enabled": False,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.consumer_session_timeout_ms / 1000,
        "broker_heartbeat_interval": settings.consumer_heartbeat_interval_ms / 1000,
        "broker_max_poll_interval": settings.consumer_max_poll_interval_ms / 1000,
        "broker_rebalance_timeout": settings.consumer_rebalance_timeout_ms / 1000,
        "producer_acks": -1,
        "producer_max_request_size": MAX_MESSAGE_BYTES,
        "stream_wait_empty": False,
    }
    options.update(overrides)
    app = faust.App(f"crmsync-{name}", **options)
    app.transport = _Transport(app.conf.broker_consumer, app, settings.consumer_fetch_max_wait_ms)
    return app


def faust_topic(app: faust.App, spec: TopicSpec) -> faust.TopicT:
    return app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
