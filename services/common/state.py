"""Redis: the state several workers share, under one key-naming scheme.

Every key is `crmsync:<kind>:<part>:<part>...`. Parts are ids validated by the schemas (no ':' inside),
so a key can always be split back into what it names. What lives here can be rebuilt: configurations
from the compacted topic, sync tokens by a full resync that creates no duplicates.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

import redis.asyncio as aioredis

PREFIX = "crmsync"


def key(kind: str, *parts: str) -> str:
    for part in parts:
        if ":" in part and kind not in _FREE_FORM_KINDS:
            raise ValueError(f"key part {part!r} of {kind} contains ':'")
    return ":".join((PREFIX, kind, *parts))


# Kinds whose last part is a provider's own id or an address, which may contain ':'.
_FREE_FORM_KINDS = {"delivery", "channel", "mailbox"}


def connect(redis_url: str) -> aioredis.Redis:
    return aioredis.from_url(redis_url, decode_responses=True, health_check_interval=30)


async def first_delivery(redis: aioredis.Redis, provider: str, delivery_id: str, ttl_s: int) -> bool:
    """True the first time a provider delivery is seen; False for a repeat within the TTL."""
    return bool(await redis.set(key("delivery", provider, delivery_id), "1", nx=True, ex=ttl_s))


async def forget_delivery(redis: aioredis.Redis, provider: str, delivery_id: str) -> None:
    """Undo `first_delivery` when publishing failed, so the provider's retry is not taken as a repeat."""
    await redis.delete(key("delivery", provider, delivery_id))


@dataclass(frozen=True)
class Channel:
    """A push channel we opened at a provider: a Google events.watch channel or a Graph subscription."""

    provider: Literal["google_calendar", "google_drive", "microsoft_graph"]
    channel_id: str
    org_id: str
    user_id: str
    integration: str
    secret: str  # Google channel token, Graph clientState
    resource_id: str = ""
    expires_at: float = 0.0


class ChannelRegistry:
    """Which channel belongs to whom, and the secret its notifications must carry."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def put(self, channel: Channel) -> None:
        await self.redis.set(key("channel", channel.provider, channel.channel_id), json.dumps(asdict(channel)))

    async def get(self, provider: str, channel_id: str) -> Channel | None:
        raw = await self.redis.get(key("channel", provider, channel_id))
        return Channel(**json.loads(raw)) if raw else None

    async def remove(self, provider: str, channel_id: str) -> None:
        await self.redis.delete(key("channel", provider, channel_id))


@dataclass(frozen=True)
class GmailMailboxOwner:
    org_id: str
    user_id: str


class GmailMailboxRegistry:
    """Gmail pushes name only the mailbox address: this says which CRM user owns it."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def put(self, address: str, owner: GmailMailboxOwner) -> None:
        await self.redis.set(key("mailbox", "gmail", address.lower()), json.dumps(asdict(owner)))

    async def get(self, address: str) -> GmailMailboxOwner | None:
        raw = await self.redis.get(key("mailbox", "gmail", address.lower()))
        return GmailMailboxOwner(**json.loads(raw)) if raw else None

    async def remove(self, address: str) -> None:
        await self.redis.delete(key("mailbox", "gmail", address.lower()))


@dataclass(frozen=True)
class IntegrationStatus:
    """What a user and an SRE see of an integration: ok, auth_failed (with why), disabled..."""

    state: str
    reason: str = ""
    updated_at: float = 0.0


class StatusStore:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def set(self, org_id: str, user_id: str, integration: str, status: IntegrationStatus) -> None:
        await self.redis.set(key("status", org_id, user_id, integration), json.dumps(asdict(status)))

    async def get(self, org_id: str, user_id: str, integration: str) -> IntegrationStatus | None:
        raw = await self.redis.get(key("status", org_id, user_id, integration))
        return IntegrationStatus(**json.loads(raw)) if raw else None

    async def all(self) -> dict[tuple[str, str, str], IntegrationStatus]:
        out = {}
        async for name in self.redis.scan_iter(match=key("status", "*"), count=500):
            _, _, org, user, integration = name.split(":", 4)
            raw = await self.redis.get(name)
            if raw:
                out[(org, user, integration)] = IntegrationStatus(**json.loads(raw))
        return out


class ConfigStore:
    """The latest configuration of each user's integration, as the admin API last published it.

    The compacted topic is the source of truth for workers; this copy answers the admin API's GET.
    """

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def put(self, config_key: str, config_json: str) -> None:
        await self.redis.set(key("config", *config_key.split(":")), config_json)

    async def get(self, config_key: str) -> str | None:
        return await self.redis.get(key("config", *config_key.split(":")))

    async def delete(self, config_key: str) -> None:
        await self.redis.delete(key("config", *config_key.split(":")))
