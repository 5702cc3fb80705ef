"""Which mailboxes this worker fetches: those whose configuration key (org:user:mail) falls in the
partitions of `integration.configs` the consumer group assigns to it.

The group's consumer reads the compacted config topic from the start of each partition it is given
(it never commits: the topic is the whole truth), starts a poller per mailbox, and stops those
pollers cleanly (between two messages) when the partition is taken away, before the group moves it.
Gmail pushes on `provider.notifications` carry the same key, so with the range assignor the same
member owns a mailbox's pushes and its config: a push just wakes the owner's poller. So do the SyncJobs
ingest publishes on `sync.jobs` when a Gmail mailbox is connected again (OAuth) after its grant failed:
the poller leaves auth_failed and fetches with the new grant. Pushes and jobs sent before the
assignment need no replay (a poller syncs when it starts), so those topics start at their end.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from schemas import GmailMailbox, Integration, IntegrationConfig, Pop3Mailbox, ProviderNotification, SyncJob
from services.common.handling import InboundRecord, MessageHandler
from services.common.logging import get_logger
from services.common.settings import Settings
from services.common.topics import INTEGRATION_CONFIGS, PROVIDER_NOTIFICATIONS, SYNC_JOBS
from services.mail_fetch.mailbox_poller import MailboxPoller

log = get_logger(__name__)

MakePoller = Callable[[IntegrationConfig], MailboxPoller]


class MailboxFleet:
    def __init__(self, settings: Settings, make_poller: MakePoller, dead_letters, policy, worker: str = "mail_fetch"):
        self.settings = settings
        self.make_poller = make_poller
        self.worker = worker
        self.pollers: dict[str, tuple[int, MailboxPoller]] = {}
        self._handlers = {
            INTEGRATION_CONFIGS.name: MessageHandler(worker, IntegrationConfig, self._on_config, dead_letters, policy),
            PROVIDER_NOTIFICATIONS.name: MessageHandler(worker, ProviderNotification, self._on_push, dead_letters,
                                                        policy),
            SYNC_JOBS.name: MessageHandler(worker, SyncJob, self._on_job, dead_letters, policy),
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        settings = self.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=f"crmsync-{self.worker}-mailboxes",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
            max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
            rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
            # aiokafka's default is 500 ms, which Tansu waits out even when a record arrives: a new
            # mailbox configuration (or a Gmail push) reached its poller up to half a second late
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        )
        await self._consumer.start()
        self._consumer.subscribe(list(self._handlers), listener=_Rebalance(self))
        self._task = asyncio.create_task(self._consume(), name="mailbox fleet")

    async def stop(self) -> None:
        """Stop every poller (each ends its session between two messages), then leave the group."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stop_pollers(list(self.pollers))
        if self._consumer is not None:
            await self._consumer.stop()

    # --- records ------------------------------------------------------------------------------
    async def _consume(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                handler = self._handlers[tp.topic]
                for record in records:
                    await handler(InboundRecord.from_consumer_record(record))

    async def _on_config(self, config: IntegrationConfig | None, record: InboundRecord) -> None:
        config_key = record.key.decode() if record.key else ""
        if config is None or config.integration != Integration.MAIL:
            if config is None and config_key in self.pollers:  # a tombstone: the mailbox was removed
                await self.pollers.pop(config_key)[1].remove()
            return
        current = self.pollers.get(config.key)
        if current is None:
            self.pollers[config.key] = (record.partition, self.make_poller(config).start())
        elif mailbox_source(current[1].config) != mailbox_source(config):
            # another mailbox (kind, Gmail address, POP3 server or user): the old one is stopped between two
            # messages and released (its Gmail watch stopped), and the new one starts with its own state
            if config.updated_at < current[1].config.updated_at:
                return
            await self.pollers.pop(config.key)[1].remove()
            self.pollers[config.key] = (record.partition, self.make_poller(config).start())
        elif config.updated_at >= current[1].config.updated_at:
            current[1].update(config)

    async def _on_push(self, notification: ProviderNotification | None, record: InboundRecord) -> None:
        if notification is None or notification.provider != "gmail":
            return
        owned = self.pollers.get(notification.key)
        if owned is not None:
            owned[1].poke()

    async def _on_job(self, job: SyncJob | None, record: InboundRecord) -> None:
        if job is None or job.integration != Integration.MAIL:
            return
        owned = self.pollers.get(job.key)
        if owned is not None:
            owned[1].retry_now()

    # --- assignment ---------------------------------------------------------------------------
    async def revoked(self, partitions: set[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions if tp.topic == INTEGRATION_CONFIGS.name}
        await self._stop_pollers([k for k, (p, _) in self.pollers.items() if p in lost])

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        configs = [tp for tp in partitions if tp.topic == INTEGRATION_CONFIGS.name]
        live = [tp for tp in partitions if tp.topic != INTEGRATION_CONFIGS.name]  # pushes and jobs
        if configs:
            await self._consumer.seek_to_beginning(*configs)
        if live:
            await self._consumer.seek_to_end(*live)
        log.info("mailbox partitions assigned", partitions=sorted(tp.partition for tp in configs))

    async def _stop_pollers(self, keys: list[str]) -> None:
        stopping = [self.pollers.pop(k)[1] for k in keys if k in self.pollers]
        await asyncio.gather(*(p.stop() for p in stopping))


def mailbox_source(config: IntegrationConfig) -> tuple:
    """Where a configuration's mail comes from: what names its seen-set, cursor and watch."""
    box = config.mailbox
    if isinstance(box, GmailMailbox):
        return ("gmail", box.address.lower())
    if isinstance(box, Pop3Mailbox):
        return ("pop3", box.host.lower(), box.port, box.username)
    return (None,)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, fleet: MailboxFleet):
        self.fleet = fleet

    async def on_partitions_revoked(self, revoked):
        await self.fleet.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned):
        await self.fleet.assigned(set(assigned))
