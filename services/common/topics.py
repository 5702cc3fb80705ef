"""The topic registry: every topic's name, partitions and policy, created idempotently at start."""
from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.logging import get_logger

log = get_logger(__name__)

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False
    partitions: int | None = None  # None: the settings' default
    has_dlq: bool = True  # an input topic: messages its consumers cannot handle go to <name>.dlq
    purpose: str = ""


CRM_CHANGES = TopicSpec("crm.changes", purpose="record changes published by the CRM backend, keyed by record")
PROVIDER_NOTIFICATIONS = TopicSpec(
    "provider.notifications", purpose="verified provider pushes, keyed org:user:integration"
)
INTEGRATION_CONFIGS = TopicSpec(
    "integration.configs", compacted=True, purpose="per user integration settings, latest per key"
)
CRM_COMMANDS = TopicSpec("crm.commands", purpose="writebacks to the CRM, keyed by org")
SYNC_JOBS = TopicSpec("sync.jobs", purpose="full/incremental syncs and renewals, keyed org:user:integration")

REGISTRY: tuple[TopicSpec, ...] = (CRM_CHANGES, PROVIDER_NOTIFICATIONS, INTEGRATION_CONFIGS, CRM_COMMANDS, SYNC_JOBS)


def dlq_name(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topic_specs(extra: tuple[TopicSpec, ...] = ()) -> list[TopicSpec]:
    """Every topic, with a DLQ beside each input topic."""
    specs: list[TopicSpec] = []
    for spec in REGISTRY + extra:
        specs.append(spec)
        if spec.has_dlq:
            specs.append(TopicSpec(dlq_name(spec.name), has_dlq=False, purpose=f"dead letters of {spec.name}"))
    return specs


def _new_topic(spec: TopicSpec, default_partitions: int, replication: int) -> NewTopic:
    configs = {"cleanup.policy": "compact"} if spec.compacted else {}
    return NewTopic(spec.name, spec.partitions or default_partitions, replication, topic_configs=configs)


async def ensure_topics(
    bootstrap_servers: str, partitions: int, replication: int = 1, extra: tuple[TopicSpec, ...] = ()
) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left as they are. Returns the created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in all_topic_specs(extra) if s.name not in existing]
        if not wanted:
            return []
        response = await admin.create_topics([_new_topic(s, partitions, replication) for s in wanted])
        created = []
        for name, code, message in getattr(response, "topic_errors", []):
            if code == 0:
                created.append(name)
            elif code != 36:  # 36 TOPIC_ALREADY_EXISTS: another process created it first
                raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
        if created:
            log.info("topics created", topics=created)
        return created
    finally:
        await admin.close()
