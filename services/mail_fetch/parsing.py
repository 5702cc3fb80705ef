"""A raw RFC 2822 message as the facts a CRM shows: parties, subject, date, text, attachments, thread ids.

Real mailboxes hold broken mail: MIME without its closing boundary, raw 8-bit headers, charsets no
codec knows, no Message-ID. Such a message is attached as well as it can be read; every part of the
parse falls back rather than fails. Only input that is not a mail message at all (no header) is
refused, with a PermanentError saying why, so the worker can dead-letter it and go on.
"""
from __future__ import annotations

import codecs
import datetime as dt
import email
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from email.utils import parsedate_to_datetime

from schemas import EmailAttachmentInfo
from services.common.retry import PermanentError
from services.mail_fetch.addresses import addresses_in
from services.mail_fetch.html_text import html_to_text
from services.mail_fetch.mime_read import header_index, read_message

MAX_BODY_CHARS = 100_000
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_EMPTY_LINE = re.compile(rb"\n\n|\r\n\r\n")


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str
    message_id_generated: bool
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_address: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    date: dt.datetime | None
    body_text: str
    attachments: tuple[EmailAttachmentInfo, ...] = ()
    defects: tuple[str, ...] = field(default=())

    @property
    def parties(self) -> list[str]:
        """Every address the message carries (From, To, Cc, Reply-To), each once."""
        seen: list[str] = []
        for address in (self.from_address, *self.to, *self.cc, *self.reply_to):
            if address and address not in seen:
                seen.append(address)
        return seen


def parse_message(raw: bytes) -> ParsedMessage:
    if not raw or raw.isspace():  # not raw.strip(): that copies a 25 MB message to test it
        raise PermanentError("empty message")
    if not _HEADER_LINE.search(raw, 0, _header_block_end(raw)):
        raise PermanentError("not an RFC 2822 message: no header line before the body")
    msg = read_message(raw)
    headers = header_index(msg)
    message_id = _first_id(header_text(headers, "Message-ID"))
    body, attachments = _body_and_attachments(msg)
    defects = tuple(sorted({type(d).__name__ for part in _walk(msg) for d in getattr(part, "defects", [])}))
    from_addresses = (addresses_in([header_text(headers, "From")])
                      or addresses_in([header_text(headers, "Sender")]))
    return ParsedMessage(
        message_id=message_id or generated_message_id(raw),
        message_id_generated=message_id is None,
        in_reply_to=tuple(_MESSAGE_ID.findall(header_text(headers, "In-Reply-To"))),
        references=tuple(_MESSAGE_ID.findall(header_text(headers, "References"))),
        from_address=from_addresses[0] if from_addresses else "",
        to=tuple(addresses_in(header_values(headers, "To"))),
        cc=tuple(addresses_in(header_values(headers, "Cc"))),
        reply_to=tuple(addresses_in(header_values(headers, "Reply-To"))),
        subject=header_text(headers, "Subject").strip(),
        date=_date(header_text(headers, "Date")),
        body_text=body[:MAX_BODY_CHARS],
        attachments=tuple(attachments),
        defects=defects,
    )


def _header_block_end(raw: bytes) -> int:
    """Where the first empty line (LF LF or CRLF CRLF) starts, or the end: found in one pass that stops
    there, not split off (a find per line ending scanned a whole CRLF message for LF LF)."""
    found = _EMPTY_LINE.search(raw)
    return found.start() if found else len(raw)


def generated_message_id(raw: bytes) -> str:
    """A stable stand-in for a missing Message-ID: the same bytes always give the same id."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@crmsync.invalid>"


# --- headers ------------------------------------------------------------------------------------


def header_values(headers: dict[str, list], name: str) -> list[str]:
    """Every value of a header, decoded; `headers` is mime_read.header_index of the message."""
    return [_decode_header(v) for v in headers.get(name.lower(), ())]


def header_text(headers: dict[str, list], name: str) -> str:
    values = header_values(headers, name)
    return values[0] if values else ""


def _decode_header(value) -> str:
    """RFC 2047 encoded words decoded; raw 8-bit bytes read as UTF-8, else Latin-1; never raises."""
    if isinstance(value, str):  # a Header (raw 8-bit bytes inside) is decoded by decode_header as it is
        if value.isascii() and "=?" not in value and "\n" not in value:
            return value  # the common case, and the hot path: nothing to decode
        value = _undo_surrogates(value)
    try:
        chunks = email.header.decode_header(value)
    except Exception:  # noqa: BLE001 - broken mail must never stop the parse
        return str(value)
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    text = "".join(out)
    return re.sub(r"\s*\r?\n\s+", " ", text)


def _undo_surrogates(value: str) -> str:
    """The parser keeps undecodable header bytes as surrogates: read them as the 8-bit text they were."""
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    return _decode_bytes(value.encode("utf-8", "surrogateescape"), None)


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            codecs.lookup(candidate)
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _first_id(value: str) -> str | None:
    found = _MESSAGE_ID.findall(value)
    if found:
        return found[0]
    stripped = value.strip()
    return f"<{stripped}>" if stripped and " " not in stripped else None


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# --- body and attachments -------------------------------------------------------------------------


def _walk(msg: EmailMessage):
    try:
        yield from msg.walk()
    except Exception:  # noqa: BLE001 - broken mail must never stop the parse
        yield msg


def _body_and_attachments(msg: EmailMessage) -> tuple[str, list[EmailAttachmentInfo]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[EmailAttachmentInfo] = []
    for part in _walk(msg):
        if part.is_multipart():
            continue
        content_type = (part.get_content_type() or "text/plain").lower()
        filename = _filename(part)
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        payload = _payload_bytes(part)
        # A multipart without a usable boundary arrives as one unsplit part: read it as text.
        readable = content_type.startswith(("text/", "multipart/"))
        if filename or disposition == "attachment" or not readable:
            attachments.append(EmailAttachmentInfo(
                name=filename or f"attachment-{len(attachments) + 1}", size=len(payload), content_type=content_type))
            continue
        text = _decode_bytes(payload, part.get_content_charset())
        (html if content_type == "text/html" else plain).append(text)
    if plain:
        return "\n\n".join(t.strip() for t in plain).strip(), attachments
    if html:
        return "\n\n".join(html_to_text(t) for t in html).strip(), attachments
    return "", attachments


def _filename(part: EmailMessage) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - broken mail must never stop the parse
        return None
    return _decode_header(name) if name else None


def _payload_bytes(part: EmailMessage) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken mail must never stop the parse
        payload = None
    if payload is None:
        raw = part.get_payload()
        if isinstance(raw, str):
            return raw.encode("utf-8", "surrogateescape")
        return b""
    return payload
