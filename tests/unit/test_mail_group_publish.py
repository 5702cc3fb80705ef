"""Group publishing: concurrent deliveries share one publish_many, and each returns only once its own
commands are out; a failure reaches every caller of the group."""
import asyncio

import pytest

from services.mail_fetch.group_publish import GroupPublisher


class SlowPublisher:
    """Holds each publish_many until released, so callers can queue up behind it."""

    def __init__(self, fail: bool = False):
        self.calls: list[list] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def publish(self, topic, key, message):
        self.calls.append([(key, message)])

    async def publish_many(self, topic, items):
        self.calls.append(list(items))
        await self.release.wait()
        if self.fail:
            raise ConnectionError("broker gone")
        return len(self.calls[-1])


async def started(coroutine) -> asyncio.Task:
    task = asyncio.create_task(coroutine)
    await asyncio.sleep(0)  # let it run up to its first wait
    return task


async def test_callers_queued_behind_a_publish_go_out_together():
    inner = SlowPublisher()
    group = GroupPublisher(inner)
    first = await started(group.publish_many("t", [("k", 1), ("k", 2)]))
    second = await started(group.publish_many("t", [("k", 3)]))
    third = await started(group.publish_many("t", [("k", 4), ("k", 5)]))
    assert inner.calls == [[("k", 1), ("k", 2)]]
    assert not second.done() and not third.done(), "nobody returns before the broker has their commands"
    inner.release.set()
    assert await asyncio.gather(first, second, third) == [2, 1, 2]
    assert inner.calls == [[("k", 1), ("k", 2)], [("k", 3), ("k", 4), ("k", 5)]], "the queued ones share a call"


async def test_a_failure_reaches_every_caller_of_the_group():
    inner = SlowPublisher(fail=True)
    group = GroupPublisher(inner)
    first = await started(group.publish_many("t", [("k", 1)]))
    second = await started(group.publish_many("t", [("k", 2)]))
    third = await started(group.publish_many("t", [("k", 3)]))
    inner.release.set()
    for task in (first, second, third):
        with pytest.raises(ConnectionError):
            await task
    assert len(inner.calls) == 2
