"""The writeback: one `attach_email` CrmCommand per matched record, with a key the CRM applies once.

The commands of fetched mail are built as the schema's JSON directly (encoded_attach_commands): what
goes into them is already of the schema's types and bounds (parsed here, or validated where it came
in: record ids from crm.changes, owner and mailbox from the configuration), and validating two models
per command and serialising them again was a third of the worker's CPU per message. A unit test holds
the encoded bytes equal to the validated models' over a corpus of real-world and broken mail
(test_mail_commands.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic_core import to_json

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


def command_values(fields: dict, records: list[RecordRef], mailbox: MailboxRef, key: str,
                   now: dt.datetime) -> list[dict]:
    """What CrmCommand holds for each record, from a message's fields (message_fields, or kept ones
    being re-linked): every field, in the schema's order, as the model would hold it."""
    return [
        {**_COMMAND_TEMPLATE,
         "org_id": mailbox.org_id,
         "idempotency_key": idempotency_key(mailbox, key, record),
         "correlation_id": str(uuid.uuid4()),
         "issued_by": ISSUED_BY,
         "issued_at": now,
         "action": {**_ACTION_TEMPLATE, "module": record.module, "record_id": record.record_id, **fields}}
        for record in records
    ]


def attach_commands(fields: dict, records: list[RecordRef], mailbox: MailboxRef, key: str,
                    now: dt.datetime) -> list[CrmCommand]:
    """One validated command per record."""
    return [CrmCommand.model_validate(values) for values in command_values(fields, records, mailbox, key, now)]


def encoded_attach_commands(fields: dict, records: list[RecordRef], mailbox: MailboxRef, key: str,
                            now: dt.datetime) -> list[bytes]:
    """attach_commands(...)'s to_bytes(), without building and validating the models: pydantic's own
    serialiser on the same values gives the same bytes."""
    return [to_json(values) for values in command_values(fields, records, mailbox, key, now)]


class _Unset:
    """A required field nobody filled in: pydantic's serialiser refuses it, so it cannot go out unnoticed."""


def _schema_template(model: type) -> dict:
    """Every field of the model in its order (which its JSON follows), with its default where it has a
    plain one: filled in by a dict update, which keeps that order."""
    return {name: _Unset if field.is_required() or field.default_factory else field.default
            for name, field in model.model_fields.items()}


_COMMAND_TEMPLATE = _schema_template(CrmCommand)
_ACTION_TEMPLATE = _schema_template(AttachEmail)


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
