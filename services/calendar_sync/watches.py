"""Push channels: open one when a user's sync starts, renew it before it expires, close it on disable.

Google channels cannot be renewed: a new one is opened (overlap is fine) and the old one stopped.
Graph subscriptions are renewed in place when the adapter can (`renew`), else re-created. Every
channel is registered in the ChannelRegistry, where ingest checks notifications against its secret.
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import time

from schemas import Integration, IntegrationConfig
from services.calendar_sync.ports import CalendarProvider, Channel
from services.calendar_sync.store import ScopeState
from services.common.logging import get_logger
from services.common.state import Channel as RegisteredChannel
from services.common.state import ChannelRegistry, key

log = get_logger(__name__)

REGISTRY_PROVIDER = {Integration.GOOGLE_CALENDAR: "google_calendar", Integration.MICROSOFT_CALENDAR: "microsoft_graph"}
WEBHOOK_PATH = {Integration.GOOGLE_CALENDAR: "/v1/webhooks/google/calendar",
                Integration.MICROSOFT_CALENDAR: "/v1/webhooks/graph"}


class Watches:
    def __init__(self, redis, public_base_url: str):
        self.redis = redis
        self.registry = ChannelRegistry(redis)
        self.public_base_url = public_base_url.rstrip("/")

    async def current(self, config: IntegrationConfig) -> Channel | None:
        stored = await ScopeState(self.redis, config.key).watch()
        return Channel(**stored) if stored else None

    async def open(self, config: IntegrationConfig, provider: CalendarProvider) -> Channel:
        address = self.public_base_url + WEBHOOK_PATH[config.integration]
        channel = await provider.watch(address, secrets.token_urlsafe(32))
        await self._register(config, channel)
        log.info("push channel opened", scope=config.key, channel_id=channel.channel_id,
                 expires_in_s=round(channel.expires_at - time.time()))
        return channel

    async def ensure(self, config: IntegrationConfig, provider: CalendarProvider) -> Channel:
        current = await self.current(config)
        if current is not None and current.expires_at > time.time():
            return current
        return await self.open(config, provider)

    async def renew(self, config: IntegrationConfig, provider: CalendarProvider) -> Channel:
        old = await self.current(config)
        renew_in_place = getattr(provider, "renew", None)
        if old is not None and renew_in_place is not None:
            try:
                channel = await renew_in_place(old)
                await self._register(config, channel)
                return channel
            except LookupError:  # the subscription is gone (removed, expired): open a new one
                pass
        channel = await self.open(config, provider)
        if old is not None and old.channel_id != channel.channel_id:
            await self._close(config, provider, old)
        return channel

    async def close(self, config: IntegrationConfig, provider: CalendarProvider | None) -> None:
        old = await self.current(config)
        if old is not None:
            await self._close(config, provider, old)
        await ScopeState(self.redis, config.key).set_watch(None)

    async def _close(self, config, provider: CalendarProvider | None, channel: Channel) -> None:
        if provider is not None:
            try:
                await provider.unwatch(channel)
            except Exception as exc:  # noqa: BLE001 - best effort: a channel left open lapses by itself
                log.warning("could not stop channel", channel_id=channel.channel_id, error=str(exc))
        await self.registry.remove(REGISTRY_PROVIDER[config.integration], channel.channel_id)

    async def _register(self, config: IntegrationConfig, channel: Channel) -> None:
        await self.registry.put(RegisteredChannel(
            REGISTRY_PROVIDER[config.integration], channel.channel_id, config.org_id, config.user_id,
            config.integration.value, channel.secret, channel.resource_id if config.integration ==
            Integration.GOOGLE_CALENDAR else "", channel.expires_at))
        await ScopeState(self.redis, config.key).set_watch(dataclasses.asdict(channel))

    async def expiring(self, within_s: float) -> list[str]:
        """Scopes whose channel expires within `within_s`: the renewal timer turns them into jobs."""
        due = []
        async for name in self.redis.scan_iter(match=key("calwatch", "*"), count=500):
            raw = await self.redis.get(name)
            if raw is None:
                continue
            if json.loads(raw)["expires_at"] < time.time() + within_s:
                due.append(name.split(":", 2)[2])
        return due
