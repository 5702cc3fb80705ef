"""Grouped sends (services/common/bus.GroupedSends): concurrent publish_many calls share one send, each
returns only once its own records are out, and a failure reaches every caller of the group."""
import asyncio

import pytest

from services.common.bus import GroupedSends


class SlowSend:
    """Holds each send until released, so callers can queue up behind it."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, list]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, topic, records):
        self.calls.append((topic, list(records)))
        await self.release.wait()
        if self.fail:
            raise ConnectionError("broker gone")


async def started(coroutine) -> asyncio.Task:
    task = asyncio.create_task(coroutine)
    await asyncio.sleep(0)  # let it run up to its first wait
    return task


async def test_callers_queued_behind_a_send_go_out_together():
    send = SlowSend()
    groups = GroupedSends(send)
    first = await started(groups.send("t", [(b"k", b"1"), (b"k", b"2")]))
    second = await started(groups.send("t", [(b"k", b"3")]))
    third = await started(groups.send("t", [(b"k", b"4"), (b"k", b"5")]))
    assert send.calls == [("t", [(b"k", b"1"), (b"k", b"2")])]
    assert not second.done() and not third.done(), "nobody returns before the broker has their records"
    send.release.set()
    assert await asyncio.gather(first, second, third) == [2, 1, 2]
    assert send.calls[1] == ("t", [(b"k", b"3"), (b"k", b"4"), (b"k", b"5")]), "the queued ones share a send"
    assert len(send.calls) == 2


async def test_topics_are_grouped_apart():
    send = SlowSend()
    groups = GroupedSends(send)
    first = await started(groups.send("a", [(None, b"1")]))
    other = await started(groups.send("b", [(None, b"2")]))
    assert [topic for topic, _ in send.calls] == ["a", "b"], "another topic does not wait behind the first"
    send.release.set()
    assert await asyncio.gather(first, other) == [1, 1]


async def test_a_failure_reaches_every_caller_of_the_group():
    send = SlowSend(fail=True)
    groups = GroupedSends(send)
    first = await started(groups.send("t", [(None, b"1")]))
    second = await started(groups.send("t", [(None, b"2")]))
    third = await started(groups.send("t", [(None, b"3")]))
    send.release.set()
    for task in (first, second, third):
        with pytest.raises(ConnectionError):
            await task
    assert len(send.calls) == 2
