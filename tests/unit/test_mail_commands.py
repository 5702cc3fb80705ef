"""The attach_email commands of fetched mail are built as JSON without validating models per message
(commands.encoded_attach_commands): here, over a corpus of real-world and broken mail, that JSON is
held to be exactly what the validated CrmCommand serialises to, so the schema's guarantees still hold."""
import datetime as dt

import pytest
from pydantic_core import PydanticSerializationError, to_json

from schemas import CrmCommand, CrmModule
from services.common.retry import PermanentError
from services.mail_fetch.commands import (
    MailboxRef,
    attach_commands,
    command_values,
    encoded_attach_commands,
    message_fields,
    message_key,
)
from services.mail_fetch.matching import RecordRef
from services.mail_fetch.parsing import parse_message
from tests.unit.test_mail_parsing import SINGLE_PART, multipart

RECORDS = [RecordRef(CrmModule.LEADS, "L-1.a"), RecordRef(CrmModule.CONTACTS, "C_2@x"),
           RecordRef(CrmModule.DEALS, "D3")]
MAILBOXES = [MailboxRef("org-1", "u1", "ann@pop.example.com", "private"),
             MailboxRef("org.2", "user_2", "bob@gmail.example", "shared")]
CORPUS = [raw for raw in SINGLE_PART if not raw.startswith(b"\r\n")] + [  # but the one that is no mail
    multipart(b"<html><p>Q3 is <b>up</b></p></html>", b"%PDF" + b"x" * 996),
    multipart("<p>caf\u00e9</p>".encode(), b"x", charset="x-unknown-42"),
    (b"From: \"Ann \\\"A\\\"\" <ann@x.com>\r\nTo: b@y.com, \"C, D\" <cd@z.org>\r\nCc: e@w.net\r\n"
     b"Subject: =?utf-8?b?8J+YgCBlbW9qaQ==?=\r\nDate: Mon, 23 Nov 2026 09:00:00 -0530\r\n"
     b"Message-ID: <" + b"x" * 1500 + b"@long>\r\nReferences: <r1@x> <r2@x>\r\n\r\n"
     b"tabs\tquotes \" backslashes \\ control \x01\x1f DEL \x7f line\xe2\x80\xa8sep\r\n"),
    "From: Jörg <jörg@bücher.de>\r\nSubject: Bücher\r\nDate: Tue, 1 Dec 2026 10:11:12.5 +0100\r\n\r\nok\r\n".encode(),
    b"From: a@x.com\r\nDate: not a date\r\n\r\nno id, no date\r\n",
    b"From: a@x.com\r\nDate: Mon, 23 Nov 2026 09:00:00 -0000\r\nMessage-ID: <z@x>\r\n\r\nnaive date\r\n",
]
def test_the_corpus_is_mail():
    for raw in CORPUS:
        try:
            parse_message(raw)
        except PermanentError as exc:
            pytest.fail(f"{raw[:40]!r}: {exc}")


NOW = dt.datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize("raw", CORPUS)
@pytest.mark.parametrize("mailbox", MAILBOXES)
@pytest.mark.parametrize("gmail_id", [None, "18c2f0a1b2"])
def test_the_encoded_commands_are_the_validated_models_json(raw, mailbox, gmail_id):
    message = parse_message(raw)
    fields = message_fields(message, mailbox, message.references[0] if message.references else message.message_id)
    key = message_key(message, gmail_id)
    for values in command_values(fields, RECORDS, mailbox, key, NOW):
        validated = CrmCommand.model_validate(values)  # what attach_commands does
        assert to_json(values) == validated.to_bytes()  # what encoded_attach_commands does
        assert CrmCommand.from_bytes(to_json(values)) == validated


def test_encoded_and_validated_commands_say_the_same_but_for_their_correlation_ids():
    message = parse_message(CORPUS[0])
    fields = message_fields(message, MAILBOXES[0], message.message_id)
    encoded = [CrmCommand.from_bytes(raw) for raw in encoded_attach_commands(fields, RECORDS, MAILBOXES[0], "k", NOW)]
    validated = attach_commands(fields, RECORDS, MAILBOXES[0], "k", NOW)
    assert [c.model_copy(update={"correlation_id": ""}) for c in encoded] == \
           [c.model_copy(update={"correlation_id": ""}) for c in validated]
    assert len({c.correlation_id for c in encoded + validated}) == 2 * len(RECORDS)  # each its own
    assert [c.action.record_id for c in encoded] == ["L-1.a", "C_2@x", "D3"]


def test_a_command_missing_a_required_field_is_refused_not_published():
    message = parse_message(CORPUS[0])
    fields = message_fields(message, MAILBOXES[0], message.message_id)
    del fields["mailbox"]
    with pytest.raises(PydanticSerializationError):
        encoded_attach_commands(fields, RECORDS, MAILBOXES[0], "k", NOW)
