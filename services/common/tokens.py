"""OAuth grants of users (and app-only tenants), encrypted at rest in Redis.

A refresh token is the key to a user's mailbox or calendar: it is stored only as a Fernet token
(SecretBox, with key rotation) and decrypted in the worker that uses it.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import redis.asyncio as aioredis

from services.common.secrets import SecretBox
from services.common.state import key


@dataclass(frozen=True)
class Grant:
    provider: Literal["google", "microsoft"]
    account_email: str
    refresh_token: str | None  # None for a Microsoft app-only (client credentials) grant
    scopes: tuple[str, ...] = ()
    tenant_id: str | None = None
    app_only: bool = False
    obtained_at: float = field(default_factory=time.time)


class TokenStore:
    def __init__(self, redis: aioredis.Redis, secrets: SecretBox):
        self.redis = redis
        self.secrets = secrets

    async def put(self, org_id: str, user_id: str, integration: str, grant: Grant) -> None:
        data = asdict(grant)
        data["scopes"] = list(grant.scopes)
        sealed = self.secrets.encrypt(json.dumps(data))
        await self.redis.set(self.key_of(org_id, user_id, integration), sealed)

    async def get(self, org_id: str, user_id: str, integration: str) -> Grant | None:
        return self.unseal(await self.redis.get(self.key_of(org_id, user_id, integration)))

    @staticmethod
    def key_of(org_id: str, user_id: str, integration: str) -> str:
        """Where the grant is kept: for a caller that reads it in one round trip with other keys."""
        return key("grant", org_id, user_id, integration)

    def unseal(self, sealed: str | None) -> Grant | None:
        """The grant stored as `sealed` (as read at key_of)."""
        if sealed is None:
            return None
        data = json.loads(self.secrets.decrypt(sealed))
        data["scopes"] = tuple(data.get("scopes", ()))
        return Grant(**data)

    async def delete(self, org_id: str, user_id: str, integration: str) -> None:
        await self.redis.delete(self.key_of(org_id, user_id, integration))

    async def rotate_all(self) -> int:
        """Re-encrypt every stored grant under the newest key, so an old key can be retired."""
        count = 0
        async for name in self.redis.scan_iter(match=key("grant", "*"), count=500):
            sealed = await self.redis.get(name)
            if sealed:
                await self.redis.set(name, self.secrets.rotate(sealed))
                count += 1
        return count
