"""Many keys in one command: small Lua scripts over declared KEYS for mail_fetch's per-batch reads and
writes. A pipeline of a hundred HGETALLs or SETs costs the client a hundred commands to pack and a
hundred replies to dispatch, which with redis-py's pure-Python protocol was most of a batch's Redis
time; one EVALSHA over the same keys does the same work in one command (and is atomic besides).
"""
from __future__ import annotations

import redis.asyncio as aioredis

_HGETALL = "local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('HGETALL', k) end return r"
_SMEMBERS = "local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('SMEMBERS', k) end return r"
_SET_EX = "for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[i + 1], 'EX', ARGV[1]) end return #KEYS"


class RedisBulk:
    def __init__(self, redis: aioredis.Redis):
        self._hgetall = redis.register_script(_HGETALL)
        self._smembers = redis.register_script(_SMEMBERS)
        self._set_ex = redis.register_script(_SET_EX)

    async def hgetall(self, keys: list[str]) -> list[dict[str, str]]:
        """Each hash, in the order of the keys; a missing one is empty."""
        if not keys:
            return []
        return [dict(zip(flat[::2], flat[1::2])) for flat in await self._hgetall(keys=keys)]

    async def smembers(self, keys: list[str]) -> list[set[str]]:
        if not keys:
            return []
        return [set(members) for members in await self._smembers(keys=keys)]

    async def set_ex(self, values: dict[str, str], ttl_s: int) -> None:
        if values:
            await self._set_ex(keys=list(values), args=[ttl_s, *values.values()])
