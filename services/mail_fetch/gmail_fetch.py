"""One pass over a Gmail mailbox: first a full sync (list, then raw messages in batches), later the
history since the stored history id; a 404 on history means a full sync again, and the seen-set
makes sure that creates nothing twice. The watch (push to ingest through Pub/Sub) is opened on the
first pass and renewed daily, as Google advises (it lapses after 7 days); a mailbox that is removed or
disabled has it stopped (users.stop), so Google stops pushing for a mailbox nobody fetches.

The grant is the one ingest's OAuth connect flow stored with TokenStore under integration "mail".
"""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import redis.asyncio as aioredis
from google.oauth2.credentials import Credentials

from schemas import GmailMailbox, IntegrationConfig
from services.common.secrets import SecretBox
from services.common.settings import Settings
from services.common.state import key
from services.common.tokens import TokenStore
from services.mail_fetch.commands import MailboxRef
from services.mail_fetch.delivery import FetchedMessage, MessageSink
from services.mail_fetch.mail_state import GmailCursor, SeenMessages
from services.mail_fetch.mailbox_poller import MailboxAuthFailed
from services.providers.google.gmail import BATCH_SIZE, GmailAuthError, GmailClient, HistoryExpired

PUSH_TOPIC = "projects/crmsync/topics/gmail"
WATCH_RENEW_S = 24 * 3600
WATCH_LIFETIME_S = 7 * 24 * 3600


class GmailFetcher:
    def __init__(self, settings: Settings, sink: MessageSink, redis: aioredis.Redis):
        self.settings = settings
        self.sink = sink
        self.redis = redis
        self.tokens = TokenStore(redis, SecretBox(settings.fernet_key_list))

    async def fetch(self, config: IntegrationConfig, stopping: threading.Event) -> int:
        box: GmailMailbox = config.mailbox
        grant = await self.tokens.get(config.org_id, config.user_id, "mail")
        if grant is None or not grant.refresh_token:
            raise MailboxAuthFailed(f"no Google consent stored for {box.address}: connect the mailbox again")
        client = await asyncio.to_thread(self._client, grant.refresh_token)
        try:
            return await self._sync(client, config, stopping)
        except GmailAuthError as exc:
            raise MailboxAuthFailed(str(exc)) from exc

    async def release(self, config: IntegrationConfig) -> None:
        """The mailbox was removed or disabled: stop its watch (users.stop), if one may still be open.
        A refused grant has nothing left to stop; other failures leave the watch to lapse within 7 days."""
        watch_key = _watch_key(config)
        if not await self.redis.exists(watch_key):
            return
        grant = await self.tokens.get(config.org_id, config.user_id, "mail")
        if grant is not None and grant.refresh_token:
            client = await asyncio.to_thread(self._client, grant.refresh_token)
            try:
                await asyncio.to_thread(client.stop)
            except GmailAuthError:
                pass
        await self.redis.delete(watch_key)

    def _client(self, refresh_token: str) -> GmailClient:
        settings = self.settings
        credentials = Credentials(token=None, refresh_token=refresh_token, token_uri=settings.google_token_url,
                                  client_id=settings.google_client_id, client_secret=settings.google_client_secret)
        return GmailClient(credentials, settings.google_api_base_url, settings.provider_ca_bundle)

    async def _sync(self, client: GmailClient, config: IntegrationConfig, stopping: threading.Event) -> int:
        box: GmailMailbox = config.mailbox
        cursor = GmailCursor(self.redis, config.org_id, config.user_id, box.address)
        await self._ensure_watch(client, config)
        start = await cursor.get()
        if start is not None:
            try:
                return await self._partial(client, config, cursor, start, stopping)
            except HistoryExpired:
                await cursor.clear()
        return await self._full(client, config, cursor, stopping)

    async def _full(self, client, config, cursor: GmailCursor, stopping) -> int:
        baseline = await asyncio.to_thread(client.profile_history_id)
        ids, page = [], None
        while True:
            found, page = await asyncio.to_thread(client.list_message_ids, page)
            ids += found
            if not page:
                break
        delivered = await self._deliver(client, config, list(reversed(ids)), stopping)  # oldest first
        if not stopping.is_set():
            await cursor.advance(baseline)
        return delivered

    async def _partial(self, client, config, cursor: GmailCursor, start: int, stopping) -> int:
        ids, page, current = [], None, start
        while True:
            found, page, current = await asyncio.to_thread(client.added_since, start, page)
            ids += [i for i in found if i not in ids]
            if not page:
                break
        delivered = await self._deliver(client, config, ids, stopping)
        if not stopping.is_set():
            await cursor.advance(current)
        return delivered

    async def _deliver(self, client: GmailClient, config: IntegrationConfig, ids: list[str], stopping) -> int:
        box: GmailMailbox = config.mailbox
        mailbox = MailboxRef(config.org_id, config.user_id, box.address, config.mailbox_mode)
        seen = SeenMessages(self.redis, config.org_id, config.user_id, f"gmail:{box.address.lower()}")
        todo = await seen.unseen(ids)
        delivered = 0
        for start in range(0, len(todo), BATCH_SIZE * 2):
            if stopping.is_set():
                break
            messages = await asyncio.to_thread(client.get_raw, todo[start:start + BATCH_SIZE * 2])
            await self.sink.deliver(mailbox, [
                FetchedMessage(m.id, m.raw, gmail_id=m.id, gmail_thread_id=m.thread_id,
                               received_at=_from_ms(m.internal_date_ms)) for m in messages])
            await seen.mark(m.id for m in messages)
            delivered += len(messages)
        return delivered

    async def _ensure_watch(self, client: GmailClient, config: IntegrationConfig) -> None:
        """Open the watch, or renew it once a day. The key lives as long as the watch may, so that
        `release` knows whether there is one to stop."""
        watch_key = _watch_key(config)
        opened = await self.redis.get(watch_key)
        if opened and time.time() - float(opened) < WATCH_RENEW_S:
            return
        await asyncio.to_thread(client.watch, PUSH_TOPIC)
        await self.redis.set(watch_key, str(time.time()), ex=WATCH_LIFETIME_S)


def _watch_key(config: IntegrationConfig) -> str:
    return key("mailwatch", config.org_id, config.user_id)


def _from_ms(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC) if value else None


def gmail_fetcher(settings: Settings, sink: MessageSink, redis: aioredis.Redis) -> GmailFetcher:
    return GmailFetcher(settings, sink, redis)
