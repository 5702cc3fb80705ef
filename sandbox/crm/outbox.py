"""Delivers the outbox to ingest: signed batches, in commit order, at least once, from one process.

Every write commits its changes to one Redis stream (store.OUTBOX) together with the records; this
publisher posts them to ingest as a real CRM posts webhooks, and deletes them once ingest answered
202. Whatever is in the stream when it reads goes in one request (up to 500 changes and
`publish_batch_max_bytes`), so a burst of writes costs a few requests, not one each. Ingest down or
throttling: the same batch is retried with backoff, nothing is skipped. A change ingest refuses as
invalid (a 4xx other than 401/429) would block everything behind it: it is moved to crm-outbox:rejected
with the answer, and logged.

With several CRM processes, only the holder of a lease publishes, so changes stay in commit order; a
crashed holder's lease runs out after `publisher_lease_s` and another process takes over.
"""
from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis

from sandbox.crm.settings import CrmSettings
from sandbox.crm.store import OUTBOX, OUTBOX_FIELD
from services.common.logging import get_logger
from services.common.retry import RetryPolicy, TransientError
from services.common.state import key
from services.ingest.client import AsyncIngestClient

log = get_logger(__name__)

REJECTED = key("crm-outbox", "rejected")
LEASE = key("crm-outbox", "lease")

_TAKE_OR_RENEW = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Worth waiting for. 401 too: a wrong or rotating secret is fixed by configuration, not by dropping changes.
_RETRYABLE = {401, 408, 425, 429}


class Lease:
    """Held by one process at a time; renewed by its holder, lost by a holder that stops renewing."""

    def __init__(self, redis: aioredis.Redis, name: str, duration_s: float):
        self.name = name
        self.token = secrets.token_hex(8)
        self.duration_ms = int(duration_s * 1000)
        self._take_or_renew = redis.register_script(_TAKE_OR_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def hold(self) -> bool:
        return bool(await self._take_or_renew(keys=[self.name], args=[self.token, self.duration_ms]))

    async def release(self) -> None:
        await self._release(keys=[self.name], args=[self.token])


class BatchRefused(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"ingest answered {status}: {body[:500]}")


class ChangePublisher:
    def __init__(self, redis: aioredis.Redis, ingest: AsyncIngestClient, settings: CrmSettings,
                 policy: RetryPolicy, idle_block_ms: int = 500):
        self.redis = redis
        self.ingest = ingest
        self.settings = settings
        self.policy = policy
        self.lease = Lease(redis, LEASE, settings.publisher_lease_s)
        self.idle_block_ms = idle_block_ms
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the batch in hand, then return from `run`."""
        self._stopping.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if not await self.lease.hold():
                    await self._pause(self.settings.publisher_lease_s / 4)
                    continue
                await self.publish_next_batch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - ingest or Redis down: keep the batch, try again later
                failures += 1
                wait = self.policy.delay(min(failures, 10))
                log.warning("cannot publish CRM changes yet", error=str(exc), attempt=failures, wait_s=round(wait, 3))
                await self._pause(wait)
        await self.lease.release()

    async def publish_next_batch(self) -> int:
        """Post what the outbox holds (waiting briefly when it is empty); the number published. After a
        batch that did not fill up, changes are let gather for `publish_linger_ms`: while commands are
        being applied, each post then carries many (a post costs the CRM and ingest about as much as the
        changes in it: a first sync's 5,000 went in thousands of posts of one or two)."""
        entries = await self._next_batch()
        published = await self._deliver(entries) if entries else 0
        if 0 < published < self.settings.publish_batch_max_changes and self.settings.publish_linger_ms:
            await self._pause(self.settings.publish_linger_ms / 1000)
        return published

    async def _deliver(self, entries: list[tuple[str, str]]) -> int:
        try:
            await self._post([change for _, change in entries])
        except BatchRefused as refused:
            if len(entries) == 1:
                await self._reject(entries[0], refused)
                return 0
            return sum([await self._deliver([entry]) for entry in entries])  # isolate the refused one
        await self.redis.xdel(OUTBOX, *(entry_id for entry_id, _ in entries))
        return len(entries)

    async def _next_batch(self) -> list[tuple[str, str]]:
        answer = await self.redis.xread({OUTBOX: "0-0"}, count=self.settings.publish_batch_max_changes,
                                        block=self.idle_block_ms)
        batch, size = [], 0
        for _, entries in answer or ():
            for entry_id, values in entries:
                change = values[OUTBOX_FIELD]
                size += len(change) + 1
                if batch and size > self.settings.publish_batch_max_bytes:
                    return batch
                batch.append((entry_id, change))
        return batch

    async def _post(self, changes: list[str]) -> None:
        response = await self.ingest.post_encoded_changes(changes)  # stored as CrmChange JSON: sent as it is
        if response.status_code == 202:
            return
        if response.status_code >= 500 or response.status_code in _RETRYABLE:
            raise TransientError(f"ingest answered {response.status_code}: {response.text[:300]}")
        raise BatchRefused(response.status_code, response.text)

    async def _reject(self, entry: tuple[str, str], refused: BatchRefused) -> None:
        entry_id, change = entry
        log.error("ingest refused a CRM change; moved aside", entry=entry_id, reason=str(refused))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(REJECTED, {OUTBOX_FIELD: change, "reason": str(refused)})
            pipe.xdel(OUTBOX, entry_id)
            await pipe.execute()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass
