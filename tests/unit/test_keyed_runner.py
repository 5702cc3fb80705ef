"""KeyedRunner: other keys do not wait, one key stays in order, acknowledgements never run ahead of work."""
import asyncio

import pytest

from services.common.keyed import KeyedRunner


class Recorder:
    def __init__(self):
        self.acknowledged: list[str] = []
        self.log: list[str] = []

    async def acknowledge(self, item: str) -> None:
        self.acknowledged.append(item)


def work(recorder: Recorder, name: str, gate: asyncio.Event | None = None):
    async def run():
        recorder.log.append(f"start {name}")
        if gate is not None:
            await gate.wait()
        recorder.log.append(f"end {name}")
    return run


async def test_another_key_runs_while_one_waits_and_is_acknowledged_only_after_the_earlier_one():
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(8, recorder.acknowledge)
    await runner.submit("ann", "a1", work(recorder, "a1", gate))
    await runner.submit("bob", "b1", work(recorder, "b1"))
    await asyncio.sleep(0.01)
    assert "end b1" in recorder.log and "end a1" not in recorder.log, "bob did not wait for ann"
    assert recorder.acknowledged == [], "b1 is done but a1, which came first, is not: no gap in the offsets"
    gate.set()
    await runner.drain()
    assert recorder.acknowledged == ["a1", "b1"]


async def test_one_keys_messages_run_one_after_another_in_order():
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(8, recorder.acknowledge)
    await runner.submit("ann", "a1", work(recorder, "a1", gate))
    await runner.submit("ann", "a2", work(recorder, "a2"))
    await asyncio.sleep(0.01)
    assert recorder.log == ["start a1"], "a2 waits for a1"
    gate.set()
    await runner.drain()
    assert recorder.log == ["start a1", "end a1", "start a2", "end a2"]
    assert recorder.acknowledged == ["a1", "a2"]


async def test_submit_waits_while_the_backlog_is_unacknowledged():
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(2, recorder.acknowledge, backlog=2)
    await runner.submit("ann", "a1", work(recorder, "a1", gate))
    await runner.submit("bob", "b1", work(recorder, "b1"))
    third = asyncio.create_task(runner.submit("cid", "c1", work(recorder, "c1")))
    await asyncio.sleep(0.01)
    assert not third.done() and runner.in_flight == 2, "a1 still holds its place, so c1 is not taken yet"
    gate.set()
    await third
    await runner.drain()
    assert recorder.acknowledged == ["a1", "b1", "c1"]


async def test_cancelled_work_is_never_acknowledged_nor_what_came_after_it():
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(8, recorder.acknowledge)
    await runner.submit("ann", "a1", work(recorder, "a1", gate))
    await runner.submit("bob", "b1", work(recorder, "b1"))
    await asyncio.sleep(0.01)
    runner.cancel()
    await runner.drain()
    assert recorder.acknowledged == [], "after a shutdown both come again: a1 was not done"


async def test_work_that_raises_stops_the_runner_like_a_failing_agent():
    recorder = Recorder()
    runner = KeyedRunner(8, recorder.acknowledge)

    async def broken():
        raise RuntimeError("a bug")

    await runner.submit("ann", "a1", broken)
    await runner.drain()
    with pytest.raises(RuntimeError, match="a bug"):
        await runner.submit("bob", "b1", work(recorder, "b1"))
    assert recorder.acknowledged == []


async def test_no_more_than_limit_run_at_once():
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(2, recorder.acknowledge)
    for name in ("a1", "b1", "c1"):
        await runner.submit(name[0], name, work(recorder, name, gate))
    await asyncio.sleep(0.01)
    assert recorder.log == ["start a1", "start b1"], "c1 waits for a free place"
    gate.set()
    await runner.drain()
    assert recorder.acknowledged == ["a1", "b1", "c1"]


async def test_one_long_wait_does_not_stop_other_keys_once_limit_messages_are_done_behind_it():
    """The stall seen at keyed concurrency 64: a pull waiting minutes on its user's first sync."""
    recorder, gate = Recorder(), asyncio.Event()
    runner = KeyedRunner(2, recorder.acknowledge, backlog=8)
    await runner.submit("ann", "a1", work(recorder, "a1", gate))
    for n in range(6):
        await asyncio.wait_for(runner.submit(f"user{n}", f"u{n}", work(recorder, f"u{n}")), 1)
    await asyncio.sleep(0.01)
    assert [entry for entry in recorder.log if entry.startswith("end u")] == [f"end u{n}" for n in range(6)]
    assert recorder.acknowledged == [], "nothing is acknowledged past a1 while a1 waits"
    gate.set()
    await runner.drain()
    assert recorder.acknowledged == ["a1"] + [f"u{n}" for n in range(6)]


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit must be at least 1"):
        KeyedRunner(0, Recorder().acknowledge)
