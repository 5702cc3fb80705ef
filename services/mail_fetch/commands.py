"""The writeback: one `attach_email` CrmCommand per matched record, with a key the CRM applies once."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Literal

from schemas import AttachEmail, CrmCommand
from services.mail_fetch.matching import RecordRef
from services.mail_fetch.parsing import ParsedMessage

ISSUED_BY = "mail"


@dataclass(frozen=True)
class MailboxRef:
    """Whose mailbox a message came from and who may see its mail in the CRM."""

    org_id: str
    owner_id: str
    name: str  # the mailbox as users know it: the Gmail address, or user@host for POP3
    visibility: Literal["private", "shared"]


def message_key(message: ParsedMessage, gmail_id: str | None = None) -> str:
    """What identifies one message in one mailbox: Gmail's id, else its Message-ID."""
    return f"gmail:{gmail_id}" if gmail_id else message.message_id


def idempotency_key(mailbox: MailboxRef, key: str, record: RecordRef) -> str:
    """Mailbox + message + record, hashed to a fixed length (Message-IDs can be long)."""
    digest = hashlib.sha256(f"{mailbox.org_id}\0{mailbox.name}\0{key}".encode()).hexdigest()[:40]
    return f"mail:{digest}:{record.module.value}:{record.record_id}"


def message_fields(message: ParsedMessage, mailbox: MailboxRef, thread: str) -> dict:
    """What an attach_email says of the message, whichever record it goes on."""
    return {
        "message_id": message.message_id[:1024],
        "thread_id": thread[:1024],
        "from_address": message.from_address,
        "to": list(message.to),
        "cc": list(message.cc),
        "subject": message.subject,
        "date": message.date,
        "body_text": message.body_text,
        "attachments": list(message.attachments),
        "visibility": mailbox.visibility,
        "owner_id": mailbox.owner_id,
        "mailbox": mailbox.name[:320],
    }


def attach_commands(fields: dict, records: list[RecordRef], mailbox: MailboxRef, key: str,
                    now: dt.datetime) -> list[CrmCommand]:
    """One command per record from a message's fields (message_fields, or kept ones being re-linked)."""
    return [
        CrmCommand(
            org_id=mailbox.org_id,
            idempotency_key=idempotency_key(mailbox, key, record),
            issued_by=ISSUED_BY,
            issued_at=now,
            action=AttachEmail(module=record.module, record_id=record.record_id, **fields),
        )
        for record in records
    ]


def attach_email_commands(
    message: ParsedMessage,
    records: list[RecordRef],
    mailbox: MailboxRef,
    thread: str,
    now: dt.datetime,
    gmail_id: str | None = None,
) -> list[CrmCommand]:
    if not records:
        return []
    return attach_commands(message_fields(message, mailbox, thread), records, mailbox,
                           message_key(message, gmail_id), now)
