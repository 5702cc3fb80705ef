"""How a worker is put together: a faust app, agents that hand each record to a MessageHandler, and
a start-up that creates the topics first. Each service's worker.py declares its agents with
`handled_agent` and its `__main__` calls `run_worker`.
"""
from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Awaitable, Callable

import faust

from schemas.base import Message
from services.common.bus import create_faust_app, faust_topic
from services.common.handling import InboundRecord, MessageHandler
from services.common.keyed import KeyedRunner
from services.common.logging import configure_logging, get_logger
from services.common.retry import RetryPolicy
from services.common.settings import Settings
from services.common.topics import TopicSpec, ensure_topics

log = get_logger(__name__)


class FaustPublisher:
    """Dead letters (and any other output) go out through the worker's own faust producer."""

    def __init__(self, app: faust.App):
        self.app = app

    async def publish(self, topic: str, key: str | None, message: Message | None) -> None:
        await (await self.send(topic, key, message))

    async def send(self, topic: str, key: str | None, message: Message | None) -> Awaitable:
        """Hand the message to the producer; what is returned completes once the broker has it. Messages
        sent one after another to a partition arrive in that order."""
        value = message.to_bytes() if message is not None else None
        return await self.app.producer.send(topic, key.encode() if key else None, value, None, None, None)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s)


def handled_agent(
    app: faust.App,
    spec: TopicSpec,
    model: type[Message] | None,
    handle: Callable[[Message | None, InboundRecord], Awaitable[None]],
    *,
    worker: str,
    settings: Settings,
    concurrency: int = 1,
):
    """An agent over `spec` whose records all end handled or dead-lettered, one at a time per partition.

    With `concurrency` > 1, records of different keys are handled side by side (up to that many at
    once), those of one key still one after another, and offsets are acknowledged in order
    (services/common/keyed.py)."""
    handler = MessageHandler(worker, model, handle, FaustPublisher(app), retry_policy(settings))

    if concurrency == 1:
        @app.agent(faust_topic(app, spec), name=f"{worker}.{spec.name}")
        async def agent(stream):
            async for event in stream.events():
                await handler(InboundRecord.from_faust_event(event))

        return agent

    @app.agent(faust_topic(app, spec), name=f"{worker}.{spec.name}")
    async def keyed_agent(stream):
        manual = stream.noack()
        runner = KeyedRunner(concurrency, manual.ack)
        try:
            async for event in manual.events():
                record = InboundRecord.from_faust_event(event)
                await runner.submit(record.key, event, functools.partial(handler, record))
        finally:
            runner.cancel()

    return keyed_agent


def new_worker_app(name: str, settings: Settings) -> faust.App:
    return create_faust_app(name, settings)


def run_worker(app: faust.App, settings: Settings, name: str, extra_topics: tuple[TopicSpec, ...] = ()) -> None:
    """Create the topics, then run the faust worker until SIGINT/SIGTERM."""
    configure_logging(settings, name)
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions,
                              settings.topic_replication, extra_topics))
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    log.info("worker starting", worker=name, bootstrap=settings.kafka_bootstrap_servers)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False)
    # faust's start-up spinner sets the root logger to DEBUG (faust/worker.py, _setup_spinner_handler) and
    # keeps a handler taking every record: each debug line of aiokafka, googleapiclient, httpx... was then
    # built and passed through one handler lock shared by the event loop, the consumer thread and the
    # provider threads, long after start-up. Without the spinner the root logger keeps our level.
    worker.spinner = None
    tune_garbage_collection()
    worker.execute_from_commandline()


def tune_garbage_collection() -> None:
    """The cyclic garbage collector tuned for a long-running worker; what it frees is unchanged.

    What start-up built (modules, classes, the app: ~120,000 objects) lives as long as the process:
    frozen, the collector's full passes no longer walk it; each walked it all, ~0.12 s of CPU. And the
    youngest generation is collected every 10,000 new container objects rather than 700: a first sync
    keeps a page of events (tens of thousands of objects) alive while it works through it, which at 700
    promoted them to the older generations fast enough to start a full pass every second or so. A
    Microsoft first sync of 5,000 events spent ~0.45 s of the worker's ~2.7 s CPU in the collector;
    tuned, ~0.07 s. Young garbage in cycles waits a little longer to be freed: a few MB at most."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
