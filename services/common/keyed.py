"""Messages of different keys handled side by side, those of one key in order, acknowledged in order.

A worker's agent that handles one message at a time spends most of it waiting on round trips (a provider
call, Redis, the broker), so one user's first sync or a burst of changes makes every other user wait.
Ordering matters only per key (`org:user:integration`, or a CRM record), so `KeyedRunner` starts each
message as soon as the previous message of its key is done, up to `limit` messages at once.

Two bounds, because acknowledgements keep arrival order: `limit` counts work running at once, `backlog`
the messages taken and not yet acknowledged. With a single bound on the unacknowledged, one message that
waits long (a pull behind a user's 5,000-event first sync, which holds that user's lock for minutes) let
`limit` later messages of other users finish and then stopped the agent taking any more, every user
waiting on one: with `backlog` well above `limit`, other users go on for as long as the backlog lasts.

Offsets stay committed after the side effect: a message is acknowledged only once it and every message
that arrived before it are done, so the acknowledged offsets never have a gap (faust commits the run of
acknowledged offsets, and must not see one acknowledged past a message still being handled). A message
whose work was cancelled (shutdown) is never acknowledged, and comes again after the restart.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
BACKLOG_PER_RUNNING = 32  # unacknowledged messages allowed per running one (64 running: 2,048, half faust's buffer)


@dataclass
class _Entry(Generic[Item]):
    item: Item
    done: bool = False


class KeyedRunner(Generic[Item]):
    """Runs `work` per submitted item; `acknowledge(item)` is called for each, in submission order,
    once it and all submitted before it are done."""

    def __init__(self, limit: int, acknowledge: Callable[[Item], Awaitable[object]], backlog: int | None = None):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.backlog = max(limit, backlog if backlog is not None else limit * BACKLOG_PER_RUNNING)
        self.acknowledge = acknowledge
        self._running = asyncio.Semaphore(limit)
        self._entries: collections.deque[_Entry[Item]] = collections.deque()
        self._last_of_key: dict[Hashable, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._room = asyncio.Condition()
        self._acknowledging = asyncio.Lock()
        self._failure: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet acknowledged."""
        return len(self._entries)

    async def submit(self, key: Hashable, item: Item, work: Callable[[], Awaitable[object]]) -> None:
        """Start `work` after the key's previous work and once fewer than `limit` are running; waits
        first while `backlog` items are unacknowledged.

        Work that raised (a bug: handlers end every message handled or dead-lettered) is raised here, as
        an agent handling messages one by one would have raised it: nothing after it is acknowledged.
        """
        async with self._room:
            await self._room.wait_for(lambda: len(self._entries) < self.backlog or self._failure is not None)
        if self._failure is not None:
            raise self._failure
        entry = _Entry(item)
        self._entries.append(entry)
        task = asyncio.create_task(self._run(self._last_of_key.get(key), work, entry))
        self._last_of_key[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda finished: self._forget(key, finished))

    async def drain(self) -> None:
        """Until everything submitted is done and acknowledged."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        """Stop all work in hand; none of it is acknowledged."""
        for task in self._tasks:
            task.cancel()

    async def _run(self, previous: asyncio.Task | None, work: Callable[[], Awaitable[object]],
                   entry: _Entry[Item]) -> None:
        if previous is not None:
            await asyncio.wait({previous})  # its outcome is its own: a failure of it does not stop this one
        try:
            async with self._running:
                await work()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = self._failure or exc
            async with self._room:
                self._room.notify_all()
            raise
        entry.done = True
        await self._acknowledge_done()

    async def _acknowledge_done(self) -> None:
        async with self._acknowledging:  # one at a time: acknowledgements leave in submission order
            acknowledged = 0
            while self._entries and self._entries[0].done:
                await self.acknowledge(self._entries.popleft().item)
                acknowledged += 1
        if acknowledged:
            async with self._room:
                self._room.notify_all()

    def _forget(self, key: Hashable, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if self._last_of_key.get(key) is task:
            del self._last_of_key[key]
