"""One pass over a Gmail mailbox: first a full sync (list, then raw messages in batches), later the
history since the stored history id; a 404 on history means a full sync again, and the seen-set
makes sure that creates nothing twice. The watch (push to ingest through Pub/Sub) is opened on the
first pass and renewed daily, as Google advises (it lapses after 7 days); a mailbox that is removed,
disabled or pointed at another address has it stopped (users.stop), so Google stops pushing for a
mailbox nobody fetches.

The grant is the one ingest's OAuth connect flow stored with TokenStore under integration "mail".
Stopping a watch needs the grant of the account it was opened for, which by then may be gone (ingest
deletes the grant with the configuration) or replaced (another account connected for a new address).
So each watch record keeps, encrypted like the grant, the refresh token it was opened with, for as long
as the watch can live (7 days); the record is deleted once the watch is stopped.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time

import redis.asyncio as aioredis

from schemas import GmailMailbox, IntegrationConfig
from services.calendar_sync.ports import AuthFailed
from services.common.secrets import SecretBox, SecretBoxError
from services.common.settings import Settings
from services.common.state import key
from services.common.tokens import Grant, TokenStore
from services.mail_fetch.commands import MailboxRef
from services.mail_fetch.delivery import FetchedMessage, MessageSink
from services.mail_fetch.mail_state import GmailCursor, SeenMessages
from services.mail_fetch.mailbox_poller import MailboxAuthFailed
from services.providers.google.gmail import BATCH_SIZE, GmailClient, HistoryExpired

PUSH_TOPIC = "projects/crmsync/topics/gmail"
WATCH_RENEW_S = 24 * 3600
WATCH_LIFETIME_S = 7 * 24 * 3600


class GmailFetcher:
    def __init__(self, settings: Settings, sink: MessageSink, redis: aioredis.Redis):
        self.settings = settings
        self.sink = sink
        self.redis = redis
        self.secrets = SecretBox(settings.fernet_key_list)
        self.tokens = TokenStore(redis, self.secrets)

    async def fetch(self, config: IntegrationConfig, stopping: threading.Event) -> int:
        box: GmailMailbox = config.mailbox
        grant = await self.tokens.get(config.org_id, config.user_id, "mail")
        if grant is None or not grant.refresh_token:
            raise MailboxAuthFailed(f"no Google consent stored for {box.address}: connect the mailbox again")
        if grant.account_email.lower() != box.address.lower():
            # the address was changed and the new account not yet connected: fetching the old account's
            # mail under the new address would attach it all a second time
            raise MailboxAuthFailed(f"the stored Google consent is for {grant.account_email}, not {box.address}: "
                                    "connect the mailbox again")
        client = GmailClient.open(self.settings, self.redis, grant, config.org_id, config.user_id)
        try:
            return await self._sync(client, grant, config, stopping)
        except AuthFailed as exc:
            raise MailboxAuthFailed(str(exc)) from exc

    async def release(self, config: IntegrationConfig) -> None:
        """The mailbox was removed, disabled or replaced: stop its watch (users.stop) with the grant it was
        opened with. A refused grant has nothing left to stop; other failures raise, and the watch lapses
        within 7 days if nobody stops it."""
        watch_key = _watch_key(config)
        sealed = await self.redis.hget(watch_key, "grant")
        if sealed:
            try:
                grant = Grant(provider="google", account_email=config.mailbox.address,
                              refresh_token=self.secrets.decrypt(sealed))
            except SecretBoxError:
                grant = None  # sealed under a retired key: the watch lapses by itself
            if grant is not None:
                client = GmailClient.open(self.settings, self.redis, grant, config.org_id, config.user_id)
                try:
                    await client.stop()
                except AuthFailed:
                    pass
        await self.redis.delete(watch_key)

    async def _sync(self, client: GmailClient, grant: Grant, config: IntegrationConfig,
                    stopping: threading.Event) -> int:
        box: GmailMailbox = config.mailbox
        cursor = GmailCursor(self.redis, config.org_id, config.user_id, box.address)
        await self._ensure_watch(client, grant, config)
        start = await cursor.get()
        if start is not None:
            try:
                return await self._partial(client, config, cursor, start, stopping)
            except HistoryExpired:
                await cursor.clear()
        return await self._full(client, config, cursor, stopping)

    async def _full(self, client: GmailClient, config, cursor: GmailCursor, stopping) -> int:
        baseline = await client.profile_history_id()
        ids, page = [], None
        while True:
            found, page = await client.list_message_ids(page)
            ids += found
            if not page:
                break
        delivered = await self._deliver(client, config, list(reversed(ids)), stopping)  # oldest first
        if not stopping.is_set():
            await cursor.advance(baseline)
        return delivered

    async def _partial(self, client: GmailClient, config, cursor: GmailCursor, start: int, stopping) -> int:
        ids, page, current = [], None, start
        while True:
            found, page, current = await client.added_since(start, page)
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
        seen = SeenMessages.of(self.redis, config)
        todo = await seen.unseen(ids)
        delivered = 0
        for start in range(0, len(todo), BATCH_SIZE * 2):
            if stopping.is_set():
                break
            messages = await client.get_raw(todo[start:start + BATCH_SIZE * 2])
            await self.sink.deliver(mailbox, [
                FetchedMessage(m.id, m.raw, gmail_id=m.id, gmail_thread_id=m.thread_id,
                               received_at=_from_ms(m.internal_date_ms)) for m in messages])
            await seen.mark(m.id for m in messages)
            delivered += len(messages)
        return delivered

    async def _ensure_watch(self, client: GmailClient, grant: Grant, config: IntegrationConfig) -> None:
        """Open the watch, or renew it once a day. The record lives as long as the watch may, so that
        `release` knows whether there is one to stop, and with which grant."""
        watch_key = _watch_key(config)
        opened = await self.redis.hget(watch_key, "opened")
        if opened and time.time() - float(opened) < WATCH_RENEW_S:
            return
        await client.watch(PUSH_TOPIC)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(watch_key, mapping={"opened": str(time.time()),
                                          "grant": self.secrets.encrypt(grant.refresh_token)})
            pipe.expire(watch_key, WATCH_LIFETIME_S)
            await pipe.execute()


def _watch_key(config: IntegrationConfig) -> str:
    """One watch record per mailbox address: a configuration pointed at another address has its own."""
    address = hashlib.sha256(config.mailbox.address.lower().encode()).hexdigest()[:32]
    return key("mailwatch", config.org_id, config.user_id, address)


def _from_ms(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC) if value else None


def gmail_fetcher(settings: Settings, sink: MessageSink, redis: aioredis.Redis) -> GmailFetcher:
    return GmailFetcher(settings, sink, redis)
