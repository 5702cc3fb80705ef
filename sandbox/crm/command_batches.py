"""crm.commands taken as they come and applied in batches of whatever arrived meanwhile.

One command at a time, the CRM spent a round trip or three per command and a commit each: a first sync's
5,000 creations took it longer than the sync took to send them. Here the consumer hands each record to
a queue, and one task applies everything queued at once (`apply_commands`: each org's commands in one
commit). A lone command is applied as soon as it comes; a batch grows while the previous one is being
applied, and, after a batch of several that did not fill up (a burst under way), for `linger_s` more:
a first sync's commands came a few at a time, and each batch of a few cost a read and a commit.

Each record still ends as `MessageHandler` ends it: a command the batch could not apply (a record not
found, a value that does not decode, Redis down) goes through the handler alone, which retries, tells a
repeat from an error and dead-letters. Records are acknowledged in arrival order once their batch is done.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.crm.commands import apply_commands
from sandbox.crm.store import CrmStore
from schemas import CrmCommand
from services.common.handling import InboundRecord, MessageHandler
from services.common.logging import get_logger

log = get_logger(__name__)

MAX_BATCH = 250  # commands per commit: a script call of a few ms, that holds Redis no longer


class CommandBatches:
    def __init__(self, store: CrmStore, handler: MessageHandler, acknowledge: Callable[[Any], Awaitable[object]],
                 max_batch: int = MAX_BATCH, linger_s: float = 0.0):
        self.store = store
        self.handler = handler
        self.acknowledge = acknowledge
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: asyncio.Queue[tuple[InboundRecord, Any]] = asyncio.Queue(maxsize=2 * max_batch)
        self._task: asyncio.Task | None = None

    async def submit(self, record: InboundRecord, event: Any) -> None:
        """Queue the record (waiting while two batches' worth are queued); `event` is acknowledged once
        the record is handled."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="crm-command-batches")
        await self._queue.put((record, event))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self.handle([record for record, _ in batch])
            for _, event in batch:
                await self.acknowledge(event)
            if 1 < len(batch) < self.max_batch and self.linger_s:
                await asyncio.sleep(self.linger_s)

    async def handle(self, records: list[InboundRecord]) -> None:
        """Apply the records' commands together; any the batch did not settle, one by one by the handler."""
        decoded: list[tuple[InboundRecord, CrmCommand]] = []
        alone: list[InboundRecord] = []
        for record in records:
            try:
                command = CrmCommand.from_bytes(record.value) if record.value is not None else None
            except Exception:  # noqa: BLE001 - not a command: the handler dead-letters it with the reason
                command = None
            (decoded.append((record, command)) if command is not None else alone.append(record))
        try:
            outcomes = await apply_commands(self.store, [command for _, command in decoded])
        except Exception as exc:  # noqa: BLE001 - Redis down or contention: each goes its own way, retried
            log.warning("command batch not applied; applying one by one", commands=len(decoded), error=str(exc))
            outcomes = [exc] * len(decoded)
        for (record, command), outcome in zip(decoded, outcomes):
            if isinstance(outcome, Exception):
                alone.append(record)
            elif not outcome:
                log.info("command applied before, skipped", org_id=command.org_id,
                         idempotency_key=command.idempotency_key)
        for record in sorted(alone, key=lambda r: (r.partition, r.offset)):
            await self.handler(record)
