"""One pass over a POP3 mailbox: list by UIDL, RETR what was not seen, publish, remember, maybe DELE.

Messages go out in batches (bounded in count, and in bytes by the sizes LIST gives); a batch's UIDLs
are remembered only once its commands are on the bus, so a crash refetches at most one batch, whose
commands carry the same idempotency keys. A batch is retrieved a pipelined window of RETRs at a time
(the adapter says how), and a stop request is honoured between two windows: what was fetched is
delivered and the session ends with QUIT. DELE happens only when the configuration asks, after the message is
safely remembered, and also for seen messages a crashed session never got to delete.
"""
from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis

from schemas import IntegrationConfig, Pop3Mailbox
from services.common.secrets import SecretBox, SecretBoxError
from services.mail_fetch.commands import MailboxRef
from services.mail_fetch.delivery import FetchedMessage, MessageSink
from services.mail_fetch.mail_state import SeenMessages
from services.mail_fetch.mailbox_poller import MailboxAuthFailed
from services.providers.pop3 import PIPELINE_WINDOW, Pop3Account, Pop3AuthError, Pop3Session

BATCH_MESSAGES = 100
BATCH_BYTES = 32 * 1024 * 1024
# poplib blocks, so each session's calls run in a thread. Not asyncio's default pool (a few threads for
# the whole worker): a login takes the server a process or two to start, and with every thread in
# logins no mailbox already open could RETR; 20 mailboxes at once spent their first seconds so.
SESSION_THREADS = 32


def pop3_mailbox_name(mailbox: Pop3Mailbox) -> str:
    return mailbox.username if "@" in mailbox.username else f"{mailbox.username}@{mailbox.host}"


class Pop3Fetcher:
    def __init__(self, sink: MessageSink, redis: aioredis.Redis, secrets: SecretBox,
                 tls_context: ssl.SSLContext | None = None, batch_messages: int = BATCH_MESSAGES):
        self.sink = sink
        self.redis = redis
        self.secrets = secrets
        self.tls_context = tls_context
        self.batch_messages = batch_messages
        self._threads = ThreadPoolExecutor(SESSION_THREADS, thread_name_prefix="pop3")

    async def _blocking(self, call, *args):
        """A blocking session call, in one of the POP3 threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(call, *args))

    async def fetch(self, config: IntegrationConfig, stopping: threading.Event) -> int:
        """Fetch what is new; returns how many messages were delivered."""
        box: Pop3Mailbox = config.mailbox
        try:
            password = self.secrets.decrypt(box.password_encrypted)
        except SecretBoxError as exc:
            raise MailboxAuthFailed(f"the stored password cannot be decrypted: {exc}") from exc
        session = Pop3Session(Pop3Account(box.host, box.port, box.security, box.username, password),
                              self._trust() if box.security != "none" else None)
        try:
            await self._blocking(session.open)
        except Pop3AuthError as exc:
            raise MailboxAuthFailed(str(exc)) from exc
        try:
            delivered = await self._fetch_new(config, box, session, stopping)
        except BaseException:
            await self._blocking(session.abort)
            raise
        await self._blocking(session.quit)
        return delivered

    async def release(self, config: IntegrationConfig) -> None:
        """Nothing to end: a POP3 server keeps no subscription for us."""

    def _trust(self) -> ssl.SSLContext:
        """The configured TLS context, else the system trust store's, loaded once: loading it costs
        more than a whole POP3 session of small messages."""
        return self.tls_context or _system_trust()

    async def _fetch_new(self, config: IntegrationConfig, box: Pop3Mailbox, session: Pop3Session,
                         stopping: threading.Event) -> int:
        mailbox = MailboxRef(config.org_id, config.user_id, pop3_mailbox_name(box), config.mailbox_mode)
        seen = SeenMessages.of(self.redis, config)
        listing = await self._blocking(session.uidls)
        unseen = set(await seen.unseen([uid for _, uid in listing]))
        if box.delete_after_fetch:
            await self._blocking(_delete, session, [n for n, uid in listing if uid not in unseen])
        else:
            await seen.forget_missing([uid for _, uid in listing])
        todo = [(n, uid) for n, uid in listing if uid in unseen]
        sizes = await self._blocking(session.sizes) if todo else {}
        delivered = 0
        while todo and not stopping.is_set():
            fetched, todo = await self._blocking(self._retrieve_batch, session, todo, sizes, stopping)
            await self.sink.deliver(mailbox, fetched)
            await seen.mark(f.source_id for f in fetched)
            if box.delete_after_fetch:
                uids = {f.source_id for f in fetched}
                await self._blocking(_delete, session, [n for n, uid in listing if uid in uids])
            delivered += len(fetched)
        return delivered

    def _retrieve_batch(self, session: Pop3Session, todo: list[tuple[int, str]], sizes: dict[int, int],
                        stopping: threading.Event) -> tuple[list[FetchedMessage], list[tuple[int, str]]]:
        """RETR the next batch (in a thread), a window at a time; returns the messages and what is left."""
        batch = self._next_batch(todo, sizes)
        fetched: list[FetchedMessage] = []
        for start in range(0, len(batch), PIPELINE_WINDOW):
            if stopping.is_set():
                break
            window = batch[start:start + PIPELINE_WINDOW]
            raws = session.retrieve_window([number for number, _ in window])
            fetched += [FetchedMessage(source_id=uid, raw=raw) for (_, uid), raw in zip(window, raws)]
        return fetched, todo[len(fetched):]

    def _next_batch(self, todo: list[tuple[int, str]], sizes: dict[int, int]) -> list[tuple[int, str]]:
        """As many messages as the count and byte bounds allow, and always at least one."""
        size = 0
        for index, (number, _) in enumerate(todo[:self.batch_messages]):
            size += sizes.get(number, 0)
            if size > BATCH_BYTES and index:
                return todo[:index]
        return todo[:self.batch_messages]


@functools.cache
def _system_trust() -> ssl.SSLContext:
    return ssl.create_default_context()


def _delete(session: Pop3Session, numbers: list[int]) -> None:
    for number in numbers:
        session.delete(number)
