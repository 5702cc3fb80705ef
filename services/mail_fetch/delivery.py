"""From fetched raw messages to attach_email commands on the bus: the one path POP3 and Gmail share.

A batch is parsed, matched against the address index, threaded and published in a few round trips.
A message that cannot be read at all is dead-lettered with the reason; it never stops the batch.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from schemas import DeadLetter
from schemas.base import Message
from services.common.bus import Records
from services.common.retry import PermanentError
from services.common.topics import CRM_COMMANDS, TopicSpec
from services.mail_fetch.address_index import AddressIndex
from services.mail_fetch.commands import MailboxRef, encoded_attach_commands, message_fields, message_key
from services.mail_fetch.kept_mail import KeptMail, KeptMessage
from services.mail_fetch.mail_state import ThreadStore
from services.mail_fetch.matching import records_for_message
from services.mail_fetch.org_settings import OrgMailSettings
from services.mail_fetch.parsing import ParsedMessage, parse_message
from services.mail_fetch.threads import ancestor_ids, thread_id

MAIL_DLQ = TopicSpec("mail.messages.dlq", has_dlq=False, purpose="mail messages mail_fetch could not read")
DEAD_LETTER_MAX_CHARS = 256 * 1024


@dataclass(frozen=True)
class FetchedMessage:
    """One message as a provider gave it: the raw RFC 2822 bytes and the provider's ids."""

    source_id: str  # the POP3 UIDL or the Gmail message id
    raw: bytes
    gmail_id: str | None = None
    gmail_thread_id: str | None = None
    received_at: dt.datetime | None = None  # Gmail's internalDate


@dataclass
class DeliveryReport:
    commands: int = 0
    attached: int = 0
    unmatched: int = 0
    dead_lettered: list[str] = field(default_factory=list)


class Publisher(Protocol):
    async def publish(self, topic: str, key: str | None, message: Message | None) -> None: ...
    async def publish_encoded(self, topic: str, records: Records) -> int: ...


class MessageSink:
    def __init__(self, index: AddressIndex, threads: ThreadStore, publisher: Publisher, settings: OrgMailSettings,
                 kept: KeptMail, worker: str = "mail_fetch"):
        self.index = index
        self.threads = threads
        self.publisher = publisher
        self.settings = settings
        self.kept = kept
        self.worker = worker

    async def deliver(self, mailbox: MailboxRef, fetched: list[FetchedMessage]) -> DeliveryReport:
        """Publish the commands of a batch; returns once the broker has all of them."""
        report = DeliveryReport()
        parsed: list[tuple[FetchedMessage, ParsedMessage]] = []
        for item in fetched:
            try:
                parsed.append((item, parse_message(item.raw)))
            except PermanentError as exc:
                await self._dead_letter(mailbox, item, str(exc))
                report.dead_lettered.append(item.source_id)
        if not parsed:
            return report
        org = mailbox.org_id
        links, deals = await self.index.lookup(org, [a for _, m in parsed for a in m.parties])
        relink = await self.settings.relinks(org)
        known = await self.threads.known(org, [i for _, m in parsed for i in (*ancestor_ids(m), m.message_id)])
        now = dt.datetime.now(dt.UTC)
        commands: Records = []
        org_key = org.encode()  # CrmCommand.org_id, the commands' Kafka key
        placed: dict[str, str] = {}
        kept: list[tuple[KeptMessage, list[str], dt.datetime]] = []
        for item, message in parsed:
            thread = thread_id(message, known, item.gmail_thread_id)
            known[message.message_id] = placed[message.message_id] = thread
            when = message.date or item.received_at or now
            records = records_for_message(message.parties, links, deals, when, relink)
            report.attached += bool(records)
            report.unmatched += not records
            if not (records or relink):
                continue
            fields = message_fields(message, mailbox, thread)
            key = message_key(message, item.gmail_id)
            commands += [(org_key, value) for value in encoded_attach_commands(fields, records, mailbox, key, now)]
            if relink:
                kept.append((KeptMessage(mailbox, key, fields), message.parties, when))
        if commands:
            await self.publisher.publish_encoded(CRM_COMMANDS.name, commands)
        await self.threads.remember(org, placed)
        await self.kept.keep(org, kept)
        report.commands = len(commands)
        return report

    async def _dead_letter(self, mailbox: MailboxRef, item: FetchedMessage, reason: str) -> None:
        letter = DeadLetter(
            topic="mail.messages", partition=0, offset=0,
            key=f"{mailbox.org_id}:{mailbox.owner_id}:mail:{item.source_id}",
            value=item.raw[:DEAD_LETTER_MAX_CHARS].decode("utf-8", "backslashreplace"),
            reason=f"message {item.source_id} of mailbox {mailbox.name}: {reason}",
            error_type="PermanentError", attempts=1, worker=self.worker,
            failed_at=dt.datetime.now(dt.UTC),
        )
        await self.publisher.publish(MAIL_DLQ.name, letter.key, letter)
