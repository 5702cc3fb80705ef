"""An org's mail settings: written by ingest's admin API (`/v1/orgs/{org}/mail-settings`), read by
mail_fetch. They live in Redis, like the rest of what ingest and the workers share, under one hash:

    crmsync:mailsettings:<org>      hash  relink_earlier_mail -> "1"

Re-linking is off unless an admin turns it on: a record whose address changes then gets only the mail
that arrives after the change, as the seeds' product does.
"""
from __future__ import annotations

import redis.asyncio as aioredis

from services.common.state import key

RELINK = "relink_earlier_mail"


class OrgMailSettings:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def relinks(self, org_id: str) -> bool:
        return await self.redis.hget(key("mailsettings", org_id), RELINK) == "1"

    async def set_relink(self, org_id: str, enabled: bool) -> None:
        if enabled:
            await self.redis.hset(key("mailsettings", org_id), RELINK, "1")
        else:
            await self.redis.hdel(key("mailsettings", org_id), RELINK)
