"""Every worker handles messages one way: nothing escapes into faust, nothing is lost or skipped.

A poison message and a handler that blows up go to the topic's DLQ with the reason and their origin,
a transient failure is retried and then succeeds, and the messages after them are still handled.
"""
import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import CrmChange, DeadLetter
from services.common.bus import Bus
from tests.fixtures.net import wait_for
from tests.fixtures.topics import read_topic
from tests.support.factories import crm_change, unique_org

pytestmark = pytest.mark.integration


async def publish(settings, items: list[tuple[str, bytes]]) -> None:
    bus = Bus(settings)
    await bus.start()
    try:
        for key, value in items:
            await bus.publish_raw("test.echo.input", key.encode(), value)
    finally:
        await bus.stop()


def test_poison_and_failing_messages_are_dead_lettered_and_the_stream_goes_on(settings, start_service, kafka_bootstrap):
    org = unique_org()
    same_key = f"{org}:Events:k"  # one key, one partition: the order below is the order handled
    items = [
        (same_key, b"{not json"),
        (same_key, crm_change(org, record_id="boom", fields={"boom": True}).to_bytes()),
        (same_key, crm_change(org, record_id="flaky", fields={"fail_transient": 2}).to_bytes()),
        (same_key, crm_change(org, record_id="fine").to_bytes()),
        (same_key, b'{"org_id": "x"}'),
    ]
    worker = start_service("tests.support.echo_worker")
    asyncio.run(publish(settings, items))

    def echoed() -> list[str]:
        out = [CrmChange.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "test.echo")]
        return [c.record_id for c in out if c.org_id == org]

    assert wait_for(lambda: len(echoed()) == 2, 60, what=f"echoes; worker log:\n{worker.log()[-3000:]}")
    assert echoed() == ["flaky", "fine"]

    def dead() -> list[DeadLetter]:
        letters = [DeadLetter.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "test.echo.input.dlq")]
        return [d for d in letters if d.key == same_key]

    letters = wait_for(lambda: len(dead()) == 3 and dead(), 30, what="dead letters")
    poison, boom, invalid = letters
    assert poison.reason.startswith("invalid CrmChange") and "json" in poison.reason.lower()
    assert poison.value == "{not json" and poison.topic == "test.echo.input"
    assert (poison.partition, poison.worker) == (boom.partition, "echo")
    assert poison.offset < boom.offset < invalid.offset
    assert boom.reason == "unexpected RuntimeError: boom requested" and boom.error_type == "RuntimeError"
    assert "module: Field required" in invalid.reason and "record_id: Field required" in invalid.reason
    assert worker.process.poll() is None, "the worker is still running"


def test_transient_failures_beyond_the_retry_budget_are_dead_lettered_not_dropped(settings, start_service, kafka_bootstrap):
    org = unique_org()
    key = f"{org}:Events:k"
    start_service("tests.support.echo_worker", CRMSYNC_RETRY_MAX_ATTEMPTS="3")
    asyncio.run(publish(settings, [(key, crm_change(org, record_id="never", fields={"fail_transient": 99}).to_bytes())]))

    def dead() -> list[DeadLetter]:
        return [DeadLetter.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "test.echo.input.dlq")
                if r.key and r.key.decode() == key]

    [letter] = wait_for(dead, 60, what="dead letter after retries")
    assert letter.attempts == 3
    assert letter.reason == "gave up after 3 attempts: throttled"


def echoed_ids(kafka_bootstrap, org: str) -> list[str]:
    return [c.record_id for c in (CrmChange.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "test.echo"))
            if c.org_id == org]


def test_with_concurrency_a_slow_key_holds_up_no_other_and_one_key_stays_in_order(settings, start_service,
                                                                                 kafka_bootstrap):
    org = unique_org()
    slow, quick = f"{org}:Events:slow", f"{org}:Events:quick"
    worker = start_service("tests.support.echo_worker", ECHO_CONCURRENCY="8")
    asyncio.run(publish(settings, [
        (slow, crm_change(org, record_id="slow-1", fields={"hold_s": 3}).to_bytes()),
        (slow, crm_change(org, record_id="slow-2").to_bytes()),
        (quick, crm_change(org, record_id="quick-1").to_bytes()),
    ]))
    wait_for(lambda: len(echoed_ids(kafka_bootstrap, org)) == 3, 60, what=f"echoes; {worker.log()[-3000:]}")
    assert echoed_ids(kafka_bootstrap, org) == ["quick-1", "slow-1", "slow-2"]


def _same_partition_key(settings, key: str) -> str:
    """Another key that the producers' partitioner puts on the same partition as `key`."""
    partitions = list(range(settings.topic_partitions))
    partitioner = DefaultPartitioner()
    target = partitioner(key.encode(), partitions, partitions)
    return next(f"{key}-{n}" for n in range(1000)
                if partitioner(f"{key}-{n}".encode(), partitions, partitions) == target)


def test_with_concurrency_a_message_in_hand_when_the_worker_dies_is_handled_after_the_restart(settings, start_service,
                                                                                            kafka_bootstrap):
    org = unique_org()
    slow = f"{org}:Events:slow"
    marker = _same_partition_key(settings, slow)
    first = start_service("tests.support.echo_worker", ECHO_CONCURRENCY="8")
    asyncio.run(publish(settings, [(slow, crm_change(org, record_id="in-hand", fields={"hold_s": 8}).to_bytes()),
                                   (marker, crm_change(org, record_id="marker").to_bytes())]))
    # The marker comes after it on its partition: echoed, it shows the slow one is in hand.
    wait_for(lambda: "marker" in echoed_ids(kafka_bootstrap, org), 60, what=f"the marker; {first.log()[-3000:]}")
    assert "in-hand" not in echoed_ids(kafka_bootstrap, org)
    first.kill()
    start_service("tests.support.echo_worker", ECHO_CONCURRENCY="8")
    wait_for(lambda: "in-hand" in echoed_ids(kafka_bootstrap, org), 90, what="the message in hand, after the restart")
    assert echoed_ids(kafka_bootstrap, org).count("marker") == 2, \
        "the marker was not acknowledged ahead of the message before it, so it came again too"
