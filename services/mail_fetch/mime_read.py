"""A raw message read with the standard library's email package (compat32, which keeps what it cannot
decode instead of raising), doing no more work than the CRM needs of it.

The parser reads a body line by line, and only a multipart (or message/*) body holds parts the CRM
needs (texts, attachment names and sizes). So the header block is read alone and a single-part body
is set as the payload as it stands, which is what the full parse makes of it. A clean header block
(every line a `Name: value` or a continuation, no envelope `From ` line, no bare CR) is split here
exactly as the parser's compat32 header_source_parse would, without its line-by-line feed machinery,
which was most of a small message's parse. Whenever the header block does not read cleanly, the
parser reads it; and whenever the parser finds a defect or a multipart, the whole message goes
through the full parser, so broken mail is read exactly as before.
"""
from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser

_PARSER = BytesParser(policy=policy.compat32)
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of the header block, whatever the line endings
_WHOLE = ("multipart", "message")
# The parser's own test for a header line (email.feedparser.headerRE) less its envelope case, with a
# non-empty name: a line starting with ':' is a defect the parser reports.
_FIELD_OR_CONTINUATION = re.compile(r"[\041-\071\073-\176]+:|[\t ]")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n)")


def read_message(raw: bytes) -> Message:
    split = _BLANK_LINE.search(raw)
    if split is not None and not raw.startswith((b"\n", b"\r\n")):  # a first blank line: no headers
        msg = _read_headers(raw[:split.start() + 1])
        if not msg.defects and not msg.get_payload() and msg.get_content_maintype() not in _WHOLE:
            msg.set_payload(raw[split.end():].decode("ascii", "surrogateescape"))
            return msg
    return _PARSER.parsebytes(raw)


def _read_headers(block: bytes) -> Message:
    """The header block (ending in its line break) as the parser reads it: the fast way when clean."""
    text = block.decode("ascii", "surrogateescape")  # as BytesFeedParser decodes
    lines = _LINE.findall(text)
    if (sum(map(len, lines)) != len(text) or text.count("\r") != text.count("\r\n")
            or not all(map(_FIELD_OR_CONTINUATION.match, lines)) or lines[0][0] in " \t"):
        return _PARSER.parsebytes(block)
    msg = Message(policy=policy.compat32)
    fields: list[list[str]] = []
    for line in lines:
        if line[0] in " \t":
            fields[-1].append(line)
        else:
            fields.append([line])
    # compat32's header_source_parse, inlined: it is called once per field
    for first, *rest in fields:
        name, value = first.split(":", 1)
        msg._headers.append((name, (value.lstrip(" \t") + "".join(rest)).rstrip("\r\n")))
    return msg


def header_index(msg: Message) -> dict[str, list]:
    """Header values by lower-case name, in order: one pass instead of a scan per header looked up."""
    index: dict[str, list] = {}
    for name, value in msg.items():
        index.setdefault(name.lower(), []).append(value)
    return index
