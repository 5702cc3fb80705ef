"""Push notification channels (events.watch, channels.stop) and their delivery over real HTTP.

Behaviour from https://developers.google.com/calendar/api/guides/push: a new channel first gets a `sync`
message numbered 1 (it may arrive before the watch call returns); every later change to the watched
calendar sends `exists` with a larger X-Goog-Message-Number (numbers increase but are not consecutive);
messages have no body; 102/200/201/202/204 acknowledge; 500/502/503/504 are retried with exponential
backoff; channels are never renewed and stop at their expiration or on channels.stop.
Deliveries run as background tasks on the server's event loop, one after another per channel, so that an
API call never waits for a receiver.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import urlsplit

import aiohttp

from sandbox.errors import google_error
from sandbox.google.calendar_events import invalid

ACKNOWLEDGED = frozenset({102, 200, 201, 202, 204})
RETRIED = frozenset({500, 502, 503, 504})
# Google backs off over minutes; the sandbox keeps the shape but shortens it so tests stay fast.
RETRY_DELAYS_S = (0.25, 0.5, 1.0)
DELIVERY_TIMEOUT_S = 10.0
MAX_CHANNEL_ID = 64
MAX_CHANNEL_TOKEN = 256
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
# Sandbox deviation: Google only delivers to https addresses. Test receivers on this machine are plain
# http servers, so http is accepted for loopback hosts and nothing else.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Channel:
    id: str
    account_id: str
    calendar_key: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    state: str = "live"
    deliveries: list[dict] = field(default_factory=list)
    last_task: asyncio.Task | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expiration_ms <= now_ms

    def to_json(self) -> dict:
        body = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
            "expiration": str(self.expiration_ms),
        }
        if self.token is not None:
            body["token"] = self.token
        return body


def _check_address(address) -> str:
    if not isinstance(address, str) or not urlsplit(address).hostname:
        raise invalid(f"WebHook callback must have a host or address: {address}", "address",
                      reason="push.webhookUrlNoHostOrAddress")
    parts = urlsplit(address)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return address
    raise invalid(f"WebHook callback must be HTTPS: {address}", "address", reason="push.webhookUrlNotHttps")


class ChannelRegistry:
    def __init__(self, default_ttl_s: int):
        self.default_ttl_s = default_ttl_s
        self.lock = threading.Lock()
        self.channels: dict[str, Channel] = {}
        self.by_calendar: dict[str, list[Channel]] = {}
        # One counter for every channel: each channel's numbers increase, with gaps, as at Google.
        self._numbers = itertools.count(2)
        self._client: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def reset(self) -> None:
        with self.lock:
            self.channels.clear()
            self.by_calendar.clear()

    def watch(self, account_id: str, calendar_key: str, resource_id: str, resource_uri: str, body) -> Channel:
        """events.watch: check the channel body, open the channel and send its `sync` message."""
        if not isinstance(body, dict) or not body.get("id"):
            raise invalid("Required", "id", reason="required")
        if body.get("type") not in ("web_hook", "webhook"):
            raise invalid("Invalid value for: type", "type")
        channel_id, token = str(body["id"]), body.get("token")
        if len(channel_id) > MAX_CHANNEL_ID:
            raise invalid("Invalid value for: id", "id")
        if token is not None and len(str(token)) > MAX_CHANNEL_TOKEN:
            raise invalid("Invalid value for: token", "token")
        now_ms = int(time.time() * 1000)
        longest = now_ms + self.default_ttl_s * 1000
        try:
            asked = int(body["expiration"]) if body.get("expiration") is not None else longest
        except (TypeError, ValueError):
            raise invalid("Invalid value for: expiration", "expiration") from None
        channel = Channel(channel_id, account_id, calendar_key, resource_id, resource_uri,
                          _check_address(body.get("address")), None if token is None else str(token),
                          min(asked, longest))
        with self.lock:
            existing = self.channels.get(channel_id)
            if existing is not None and existing.state == "live" and not existing.expired(now_ms):
                raise invalid(f"Channel id {channel_id} not unique", "id", reason="push.channelIdNotUnique")
            self.channels[channel_id] = channel
            self.by_calendar.setdefault(calendar_key, []).append(channel)
            self._schedule(channel, "sync", 1)
        return channel

    def stop(self, account_id: str, body) -> None:
        """channels.stop {id, resourceId}: 404 for a channel this caller does not have open."""
        channel_id = body.get("id") if isinstance(body, dict) else None
        with self.lock:
            channel = self.channels.get(channel_id) if channel_id else None
            if (channel is None or channel.state != "live" or channel.account_id != account_id
                    or channel.resource_id != body.get("resourceId")):
                raise google_error(404, "notFound", f"Channel '{channel_id}' not found for project")
            self._close(channel, "stopped")

    def notify(self, calendar_key: str, state: str = "exists") -> None:
        """A change on the calendar: one `exists` message to each live channel watching it. Drive's changes
        channels name the same message `change` (https://developers.google.com/workspace/drive/api/guides/push)."""
        watching = self.by_calendar.get(calendar_key)
        if not watching:
            return
        now_ms = int(time.time() * 1000)
        with self.lock:
            for channel in list(watching):
                if channel.expired(now_ms):
                    self._close(channel, "expired")
                else:
                    self._schedule(channel, state, next(self._numbers))

    def describe(self) -> list[dict]:
        with self.lock:
            return [
                {**c.to_json(), "address": c.address, "state": c.state, "calendar": c.calendar_key,
                 "deliveries": list(c.deliveries)}
                for c in self.channels.values()
            ]

    def _close(self, channel: Channel, state: str) -> None:
        channel.state = state
        watching = self.by_calendar.get(channel.calendar_key, [])
        if channel in watching:
            watching.remove(channel)

    # --- delivery -------------------------------------------------------------------------------------
    def _schedule(self, channel: Channel, state: str, number: int) -> None:
        try:
            loop = asyncio.get_running_loop()
            self._loop = loop
        except RuntimeError:  # called from a worker thread: hand over to the server's loop
            if self._loop is None:
                return
            self._loop.call_soon_threadsafe(self._schedule, channel, state, number)
            return
        previous = channel.last_task
        channel.last_task = loop.create_task(self._deliver(channel, state, number, previous))

    async def _deliver(self, channel: Channel, state: str, number: int, previous: asyncio.Task | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": formatdate(channel.expiration_ms / 1000, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
            "User-Agent": USER_AGENT,
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS_S)):
            if delay:
                await asyncio.sleep(delay)
            try:
                async with self._http().post(channel.address, headers=headers) as response:
                    outcome: int | str = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            channel.deliveries.append(
                {"number": number, "state": state, "attempt": attempt + 1, "status": outcome, "at": time.time()}
            )
            if outcome not in RETRIED:
                return

    def _http(self) -> aiohttp.ClientSession:
        # aiohttp rather than httpx: at 100 changes a second httpx's pool took over half of the sandbox's CPU
        # (py-spy), which a bench on the same cores takes from the services it measures.
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S))
        return self._client
