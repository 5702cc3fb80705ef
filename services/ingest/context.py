"""What ingest's routes share: settings, the bus, Redis and the registries built on it."""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import Request

from services.common.bus import Bus
from services.common.secrets import SecretBox
from services.common.settings import Settings
from services.common.state import ChannelRegistry, GmailMailboxRegistry


@dataclass
class IngestContext:
    settings: Settings
    bus: Bus
    redis: aioredis.Redis
    secrets: SecretBox

    @property
    def channels(self) -> ChannelRegistry:
        return ChannelRegistry(self.redis)

    @property
    def gmail_mailboxes(self) -> GmailMailboxRegistry:
        return GmailMailboxRegistry(self.redis)


def ingest_context(request: Request) -> IngestContext:
    return request.app.state.ingest


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past `limit` bytes without reading the rest."""
    from services.ingest.problems import Problem

    too_large = Problem(413, "body-too-large", "Request body too large", f"the body exceeds {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
