"""A raw message read with the standard library's email package (compat32, which keeps what it cannot
decode instead of raising), doing no more work than the CRM needs of it.

The parser reads a body line by line, and only a multipart (or message/*) body holds parts the CRM
needs (texts, attachment names and sizes). So the header block is parsed alone and a single-part body
is set as the payload as it stands, which is what the full parse makes of it. Whenever the header
block does not read cleanly (a defect, a line that is not a header, a blank line the split missed),
the whole message goes through the full parser, so broken mail is read exactly as before.
"""
from __future__ import annotations

import re
from email import policy
from email.message import Message
from email.parser import BytesParser

_PARSER = BytesParser(policy=policy.compat32)
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of the header block, whatever the line endings
_WHOLE = ("multipart", "message")


def read_message(raw: bytes) -> Message:
    split = _BLANK_LINE.search(raw)
    if split is not None:
        msg = _PARSER.parsebytes(raw[:split.start() + 1])
        if not msg.defects and not msg.get_payload() and msg.get_content_maintype() not in _WHOLE:
            msg.set_payload(raw[split.end():].decode("ascii", "surrogateescape"))
            return msg
    return _PARSER.parsebytes(raw)


def header_index(msg: Message) -> dict[str, list]:
    """Header values by lower-case name, in order: one pass instead of a scan per header looked up."""
    index: dict[str, list] = {}
    for name, value in msg.items():
        index.setdefault(name.lower(), []).append(value)
    return index
