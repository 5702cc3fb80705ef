"""The bus producer and the topic registry, against the real broker."""
import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

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
