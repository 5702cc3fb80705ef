"""The bus producer and the topic registry, against the real broker."""
import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from schemas import CrmChange
from services.common.bus import Bus
from services.common.topics import all_topic_specs, ensure_topics
from tests.fixtures.topics import read_topic
from tests.support.factories import crm_change, unique_org

pytestmark = pytest.mark.integration


def test_a_key_lands_on_the_same_partition_whether_sent_alone_or_in_a_batch(settings, kafka_bootstrap):
    org = unique_org()
    changes = [crm_change(org, record_id=f"r{i}") for i in range(40)]

    async def publish():
        bus = Bus(settings)
        await bus.start()
        try:
            await bus.publish_many("crm.changes", [(c.key, c) for c in changes])
            for c in changes:
                await bus.publish("crm.changes", c.key, c)
        finally:
            await bus.stop()

    asyncio.run(publish())
    partitions: dict[str, set[int]] = {}
    for record in read_topic(kafka_bootstrap, "crm.changes"):
        if record.key.decode().startswith(org):
            partitions.setdefault(record.key.decode(), set()).add(record.partition)
    assert len(partitions) == 40
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1, "keys spread over partitions"


def test_topics_are_created_once_with_a_dlq_per_input_topic_and_compaction_for_configs(settings, kafka_bootstrap):
    async def check():
        await ensure_topics(kafka_bootstrap, settings.topic_partitions)
        assert await ensure_topics(kafka_bootstrap, settings.topic_partitions) == [], "idempotent"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            names = set(await admin.list_topics())
            from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

            [configs] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "integration.configs")])
            return names, configs
        finally:
            await admin.close()

    names, configs = asyncio.run(check())
    expected = {s.name for s in all_topic_specs()}
    assert expected <= names
    assert {"crm.changes.dlq", "provider.notifications.dlq", "crm.commands.dlq", "integration.configs.dlq"} <= names
    entries = {entry[0]: entry[1] for resource in configs.resources for entry in resource[4]}
    assert entries.get("cleanup.policy") == "compact"


def same_partition_records(org: str, count: int, partitions: int) -> list[str]:
    """Record ids whose keys all land on one partition: the calls then queue for the same partition."""
    partitioner, ids, n = DefaultPartitioner(), [], 0
    while len(ids) < count:
        key = crm_change(org, record_id=f"r{n}").key.encode()
        if partitioner(key, list(range(partitions)), list(range(partitions))) == 0:
            ids.append(f"r{n}")
        n += 1
    return ids


def test_many_concurrent_publish_many_calls_all_arrive_once(settings, kafka_bootstrap):
    """A hundred and fifty publish_many calls at once into one partition (as mail_fetch's mailboxes make
    them): each returns once its records are on the broker, none gives up with a false KafkaTimeoutError
    (aiokafka's send_batch does when many wait for one partition's queue), and every record is there
    exactly once, in order per key."""
    org = unique_org()
    callers, per_caller = 150, 20
    records = same_partition_records(org, callers, settings.topic_partitions)
    batches = [[crm_change(org, record_id=r, fields={"n": n, "pad": "x" * 2000}) for n in range(per_caller)]
               for r in records]

    async def publish():
        bus = Bus(settings)
        await bus.start()
        try:
            return await asyncio.gather(*(bus.publish_many("crm.changes", [(c.key, c) for c in batch])
                                          for batch in batches))
        finally:
            await bus.stop()

    assert asyncio.run(publish()) == [per_caller] * callers
    seen: dict[str, list[int]] = {}
    for record in read_topic(kafka_bootstrap, "crm.changes", timeout_s=30):
        if record.key.decode().startswith(org):
            change = CrmChange.model_validate_json(record.value)
            seen.setdefault(change.record_id, []).append(change.fields["n"])
    assert seen == {r: list(range(per_caller)) for r in records}
