"""A token bucket in Redis, shared by every worker that calls one provider for one user.

Provider quotas are per user (Google: 600 requests a minute per user; Graph: 10,000 per 10 minutes per
mailbox), while the calls for one user may come from several workers at once (a first sync, a push-driven
pull, a CRM change). A bucket per process would let them add up past the quota; one bucket in Redis,
updated by a Lua script, makes every worker draw from the same tokens atomically.

The script reserves: a caller always takes its tokens, the bucket may go below zero, and the script
answers how long the caller must wait until its tokens would have been there. Each caller thus waits
once, callers are served in the order they asked, and over any interval of t seconds at most
`capacity + rate * t` tokens are used. The clock is Redis's (TIME), so workers on hosts whose clocks
differ still share one timeline. A caller that would wait past its deadline takes nothing and gets
`RateLimited` (a TransientError carrying the wait as retry_after_s), so it can give the message back
instead of holding a partition.
"""
from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.common.retry import TransientError
from services.common.settings import Settings
from services.common.state import key

# KEYS[1]: the bucket (hash: tokens, ts). ARGV: capacity, refill per second, cost, longest wait accepted.
# Answers {1, wait_s} when the tokens are reserved, {0, wait_s} when the wait would be too long.
# Numbers go back as strings: Redis turns Lua numbers into integers.
_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(held[1]) or capacity
local since = tonumber(held[2]) or now
if now > since then
  tokens = math.min(capacity, tokens + (now - since) * rate)
else
  now = since
end
local left = tokens - cost
local wait = 0
if left < 0 then
  wait = -left / rate
end
if wait > max_wait then
  return {0, tostring(wait)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(left), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - left) / rate * 1000) + 1000)
return {1, tostring(wait)}
"""


class RateLimited(TransientError):
    """The tokens would come later than the caller's deadline; nothing was taken."""


class TokenBucket:
    """One shared bucket: `capacity` tokens at most, refilled at `refill_per_s`."""

    def __init__(self, redis: aioredis.Redis, name: str, capacity: float, refill_per_s: float,
                 max_wait_s: float = 60.0):
        if capacity <= 0 or refill_per_s <= 0:
            raise ValueError("capacity and refill rate must be positive")
        self.redis = redis
        self.name = name
        self.capacity = capacity
        self.refill_per_s = refill_per_s
        self.max_wait_s = max_wait_s
        self._script = redis.register_script(_ACQUIRE)

    async def reserve(self, cost: float = 1, max_wait_s: float | None = None) -> float:
        """Take `cost` tokens and return how many seconds to wait before using them."""
        if not 0 < cost <= self.capacity:
            raise ValueError(f"cost {cost} must be within (0, capacity {self.capacity}]")
        limit = self.max_wait_s if max_wait_s is None else max_wait_s
        granted, wait = await self._script(keys=[self.name], args=[self.capacity, self.refill_per_s, cost, limit])
        wait_s = float(wait)
        if not int(granted):
            raise RateLimited(f"{self.name}: {cost} tokens only in {wait_s:.2f}s, past the {limit}s deadline",
                              retry_after_s=wait_s)
        return wait_s

    async def acquire(self, cost: float = 1, max_wait_s: float | None = None) -> float:
        """Wait until `cost` tokens are ours; returns the seconds waited. Raises RateLimited past the deadline."""
        wait_s = await self.reserve(cost, max_wait_s)
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return wait_s


def provider_bucket(redis: aioredis.Redis, settings: Settings, provider: str, *who: str) -> TokenBucket:
    """The bucket of one provider API for one user (`who`: org id, user id), sized from the settings.

    provider: "google_calendar", "google_drive", "gmail" (each Google API has its own per-user quota)
    or "microsoft_graph" (one quota per mailbox across Graph's Outlook resources).
    """
    if provider == "microsoft_graph":
        count, window_s = settings.graph_quota_per_mailbox, settings.graph_quota_window_s
    else:
        count, window_s = settings.google_quota_per_user, settings.google_quota_window_s
    return TokenBucket(redis, key("ratelimit", provider, *who), capacity=count, refill_per_s=count / window_s,
                       max_wait_s=settings.rate_limit_max_wait_s)
