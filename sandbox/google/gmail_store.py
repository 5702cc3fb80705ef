"""Gmail mailboxes of sandbox accounts: messages, threads, the history log, watches and their push.

Facts kept (https://developers.google.com/workspace/gmail/api/guides/sync and .../guides/push):
history ids only increase, with gaps; history older than what the mailbox keeps answers 404 (the
control API expires it on demand); a message joins the thread of the message it answers (Gmail
threads by References/In-Reply-To plus subject, here by the headers alone); a watch pushes
`{emailAddress, historyId}` to the topic's push subscription, at most one push a second per user.
Sandbox deviation: a push that would come within a second of the previous one is not dropped but
sent when the second is up, carrying the latest history id, so a test never waits on a poll.
"""
from __future__ import annotations

import base64
import email
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from email import policy

import httpx

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    history_id: int
    internal_date_ms: int
    label_ids: tuple[str, ...] = ("INBOX", "UNREAD")
    header_ids: tuple[str, ...] = ()  # its own Message-ID, to thread replies onto it


@dataclass
class Watch:
    topic: str
    expiration_ms: int


@dataclass
class Mailbox:
    email: str
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    by_header_id: dict[str, str] = field(default_factory=dict)  # Message-ID -> thread id
    history: list[tuple[int, str]] = field(default_factory=list)  # (history id, message id added)
    history_id: int = 1000
    oldest_history_id: int = 1000
    watch: Watch | None = None
    last_push: float = 0.0
    push_pending: bool = False


class GmailStore:
    def __init__(self, push_min_interval_s: float = 1.0):
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.push_endpoints: dict[str, str] = {}  # Pub/Sub topic -> push subscription endpoint
        self.push_min_interval_s = push_min_interval_s
        self._ids = itertools.count(0x18C0000000000)
        self._pushes = itertools.count(1)

    def reset(self) -> None:
        with self.lock:
            self.mailboxes.clear()
            self.push_endpoints.clear()

    def mailbox(self, account_id: str, address: str) -> Mailbox:
        with self.lock:
            return self.mailboxes.setdefault(account_id, Mailbox(address))

    # --- mail -----------------------------------------------------------------------------------
    def deliver(self, box: Mailbox, raw: bytes) -> StoredMessage:
        """A message arrives: it gets an id, a thread and a history record, and the watch is pushed."""
        headers = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=policy.compat32)
        own = tuple(_MESSAGE_ID.findall(str(headers.get("Message-ID", ""))))
        parents = _MESSAGE_ID.findall(f"{headers.get('References', '')} {headers.get('In-Reply-To', '')}")
        with self.lock:
            message_id = format(next(self._ids), "x")
            thread = next((box.by_header_id[p] for p in parents if p in box.by_header_id), message_id)
            box.history_id += secrets.randbelow(5) + 1  # ids increase with gaps
            message = StoredMessage(message_id, thread, raw, box.history_id, int(time.time() * 1000), header_ids=own)
            box.messages[message_id] = message
            for header_id in own:
                box.by_header_id.setdefault(header_id, thread)
            box.history.append((box.history_id, message_id))
        self._push(box)
        return message

    def expire_history(self, box: Mailbox) -> None:
        """What a week (or some hours) without syncing does: every stored start id becomes too old."""
        with self.lock:
            box.history_id += 1
            box.oldest_history_id = box.history_id
            box.history.clear()

    # --- push -----------------------------------------------------------------------------------
    def _push(self, box: Mailbox) -> None:
        with self.lock:
            watch = box.watch
            if watch is None or watch.expiration_ms < time.time() * 1000 or watch.topic not in self.push_endpoints:
                return
            if box.push_pending:
                return
            box.push_pending = True
            wait = max(0.0, box.last_push + self.push_min_interval_s - time.time())
        threading.Timer(wait, self._send_push, args=(box,)).start()

    def _send_push(self, box: Mailbox) -> None:
        with self.lock:
            box.push_pending = False
            box.last_push = time.time()
            watch = box.watch
            endpoint = self.push_endpoints.get(watch.topic) if watch else None
            data = json.dumps({"emailAddress": box.email, "historyId": box.history_id}).encode()
        if endpoint is None:
            return
        body = {
            "message": {
                "data": base64.urlsafe_b64encode(data).decode(),
                "messageId": str(next(self._pushes)) + secrets.token_hex(4),
                "publishTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            },
            "subscription": f"{watch.topic.replace('/topics/', '/subscriptions/')}-push",
        }
        try:
            httpx.post(endpoint, json=body, timeout=10)  # any 2xx acknowledges; failures are not retried here
        except httpx.HTTPError:
            pass
