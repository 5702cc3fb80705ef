"""What mail_fetch remembers per mailbox in Redis: the UIDLs (or Gmail ids) already handled, Gmail's
history id, and the thread each Message-ID was placed in.

A mailbox's seen-set is named by a digest of where the mail comes from (server, port, user, or the
Gmail address), so pointing a configuration at another mailbox starts a fresh set instead of
silently skipping its messages. Losing this state means a refetch whose commands carry the same
idempotency keys: the CRM attaches nothing twice.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

import redis.asyncio as aioredis

from schemas import GmailMailbox, IntegrationConfig
from services.common.state import key
from services.mail_fetch.redis_bulk import RedisBulk

THREAD_TTL_S = 400 * 24 * 3600


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SeenMessages:
    """The per-mailbox set of message ids (UIDL or Gmail id) whose commands are on the bus."""

    def __init__(self, redis: aioredis.Redis | None, org_id: str, user_id: str, source: str):
        self.redis = redis
        self.key = key("mailseen", org_id, user_id, _digest(source))

    @classmethod
    def of(cls, redis: aioredis.Redis | None, config: IntegrationConfig) -> SeenMessages:
        """The seen-set of a configured mailbox (redis None: only to name its key, as the bench does)."""
        box = config.mailbox
        source = (f"gmail:{box.address.lower()}" if isinstance(box, GmailMailbox)
                  else f"pop3:{box.host}:{box.port}:{box.username}")
        return cls(redis, config.org_id, config.user_id, source)

    async def unseen(self, ids: list[str]) -> list[str]:
        if not ids:
            return []
        flags = await self.redis.smismember(self.key, ids)
        return [i for i, seen in zip(ids, flags) if not seen]

    async def mark(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            await self.redis.sadd(self.key, *ids)

    async def forget_missing(self, present: list[str]) -> None:
        """Drop ids the server no longer lists (deleted there), so the set does not grow forever."""
        stored = await self.redis.smembers(self.key)
        gone = stored - set(present)
        if gone:
            await self.redis.srem(self.key, *gone)


class GmailCursor:
    """The history id a Gmail mailbox has been synced to; none means a full sync is due."""

    def __init__(self, redis: aioredis.Redis, org_id: str, user_id: str, address: str):
        self.redis = redis
        self.key = key("mailcursor", org_id, user_id, _digest(address.lower()))

    async def get(self) -> int | None:
        value = await self.redis.get(self.key)
        return int(value) if value else None

    async def advance(self, history_id: int) -> None:
        """Move forward only: a late, older answer never rewinds the cursor."""
        await self.redis.eval(
            "local v = redis.call('GET', KEYS[1]) "
            "if (not v) or tonumber(v) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end",
            1, self.key, history_id)

    async def clear(self) -> None:
        await self.redis.delete(self.key)


class ThreadStore:
    """Message-ID -> thread id, per org, so replies whose headers are cut short still join their thread."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.bulk = RedisBulk(redis)

    def _key(self, org_id: str, message_id: str) -> str:
        return key("mailthread", org_id, _digest(message_id))

    async def known(self, org_id: str, message_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}
        values = await self.redis.mget([self._key(org_id, i) for i in ids])
        return {i: v for i, v in zip(ids, values) if v}

    async def remember(self, org_id: str, threads: dict[str, str]) -> None:
        await self.bulk.set_ex({self._key(org_id, m): thread for m, thread in threads.items()}, THREAD_TTL_S)


class MailboxLock:
    """One sync of a mailbox at a time across all workers (a rebalance, a Gmail push racing the poll)."""

    def __init__(self, redis: aioredis.Redis, mailbox_key: str, ttl_s: float = 120.0):
        self.redis = redis
        self.key = key("maillock", *mailbox_key.split(":"))
        self.ttl_ms = int(ttl_s * 1000)
        self.token = secrets.token_hex(8)

    async def acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def refresh(self) -> None:
        await self.redis.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end",
            1, self.key, self.token, self.ttl_ms)

    async def release(self) -> None:
        await self.redis.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end", 1, self.key, self.token)
