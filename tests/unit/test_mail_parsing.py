"""Raw messages -> what the CRM shows, including the broken mail real mailboxes hold."""
import base64
import datetime as dt
from email import policy
from email.parser import BytesParser

import pytest

from services.common.retry import PermanentError
from services.mail_fetch.html_text import html_to_text
from services.mail_fetch.mime_read import read_message
from services.mail_fetch.parsing import parse_message


def test_a_plain_message():
    raw = (b"From: Ann <ANN@example.com>\r\nTo: bob@x.com, Carl <carl@y.org>\r\nCc: dee@z.net\r\n"
           b"Reply-To: ann+replies@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
           b"Date: Mon, 23 Nov 2026 09:00:00 +0100\r\nMessage-ID: <m1@example.com>\r\n"
           b"In-Reply-To: <m0@example.com>\r\nReferences: <root@example.com> <m0@example.com>\r\n\r\nHello Bob\r\n")
    m = parse_message(raw)
    assert m.message_id == "<m1@example.com>" and not m.message_id_generated
    assert m.from_address == "ann@example.com"
    assert m.to == ("bob@x.com", "carl@y.org") and m.cc == ("dee@z.net",)
    assert m.reply_to == ("ann+replies@example.com",)
    assert m.subject == "Grüße"
    assert m.date == dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
    assert m.body_text == "Hello Bob"
    assert m.references == ("<root@example.com>", "<m0@example.com>") and m.in_reply_to == ("<m0@example.com>",)
    assert m.parties == ["ann@example.com", "bob@x.com", "carl@y.org", "dee@z.net", "ann+replies@example.com"]


def multipart(html: bytes, attachment: bytes, charset: str = "utf-8") -> bytes:
    encoded = base64.encodebytes(attachment)
    return (b"From: a@x.com\r\nTo: b@y.com\r\nSubject: report\r\nMessage-ID: <mp@x>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=BOUND\r\n\r\n--BOUND\r\n"
            b"Content-Type: text/html; charset=" + charset.encode() + b"\r\n\r\n" + html + b"\r\n--BOUND\r\n"
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"q3 report.pdf\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--BOUND--\r\n")


def test_html_becomes_text_and_attachments_have_names_and_sizes():
    m = parse_message(multipart(b"<html><style>p{}</style><p>Q3 is <b>up</b></p><ul><li>one</li></ul></html>",
                                b"%PDF" + b"x" * 996))
    assert m.body_text == "Q3 is up\n\n- one"
    [attachment] = m.attachments
    assert (attachment.name, attachment.size, attachment.content_type) == ("q3 report.pdf", 1000, "application/pdf")


def test_a_25_mb_attachment_is_measured_not_kept():
    m = parse_message(multipart(b"<p>big</p>", b"\0" * (25 * 1024 * 1024)))
    assert m.attachments[0].size == 25 * 1024 * 1024 and m.body_text == "big"


def test_an_unknown_charset_is_read_as_utf8_or_latin1():
    m = parse_message(multipart("<p>caf\u00e9</p>".encode(), b"x", charset="x-unknown-42"))
    assert m.body_text == "café"


def test_raw_8bit_headers_are_read():
    raw = "From: Jörg <jörg@bücher.de>\r\nSubject: Bücher für Sie\r\nMessage-ID: <8@x>\r\n\r\nok\r\n".encode()
    m = parse_message(raw)
    assert m.subject == "Bücher für Sie" and m.from_address == "jörg@xn--bcher-kva.de"
    latin = "From: a@x.com\r\nSubject: caf\u00e9\r\n\r\nok\r\n".encode("latin-1")
    assert parse_message(latin).subject == "café"


def test_broken_mime_keeps_what_can_be_read():
    no_boundary = (b"From: a@x.com\r\nTo: b@y.com\r\nContent-Type: multipart/mixed\r\n\r\n"
                   b"--lost\r\nContent-Type: text/plain\r\n\r\nstill here\r\n")
    m = parse_message(no_boundary)
    assert "still here" in m.body_text and m.from_address == "a@x.com" and m.defects
    unterminated = multipart(b"<p>hi</p>", b"abc").replace(b"--BOUND--\r\n", b"")
    assert parse_message(unterminated).body_text == "hi"
    bad_base64 = (b"From: a@x.com\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                  b"!!!not base64***\r\n")
    parse_message(bad_base64)  # does not raise


def test_no_message_id_gets_a_stable_generated_one():
    raw = b"From: a@x.com\r\nSubject: no id\r\n\r\nbody\r\n"
    first, again = parse_message(raw), parse_message(raw)
    assert first.message_id_generated and first.message_id == again.message_id
    assert first.message_id.endswith("@crmsync.invalid>")
    assert parse_message(raw + b"x").message_id != first.message_id


@pytest.mark.parametrize("raw, reason", [(b"", "empty"), (b"   \r\n", "empty"),
                                         (b"just some text\r\nno headers\r\n", "no header")])
def test_what_is_not_a_mail_message_is_refused_with_the_reason(raw, reason):
    with pytest.raises(PermanentError, match=reason):
        parse_message(raw)


def test_html_to_text_skips_scripts_and_decodes_entities():
    assert html_to_text("<script>x()</script><div>a&amp;b&nbsp;c</div><br>d") == "a&b c\n\nd"


SINGLE_PART = [
    b"From: a@x.com\r\nSubject: crlf\r\n\r\nline one\r\n.line two\r\n",
    b"From: a@x.com\nSubject: lf only\n\nline one\nline two\n",
    b"From: a@x.com\r\nSubject: mixed\r\n\nbody\r\n",
    b"From: a@x.com\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + base64.encodebytes("Grüße\r\n".encode()),
    b"From: a@x.com\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft break\r\n",
    "From: Jörg <j@x.de>\r\nSubject: 8-bit\r\n\r\nBücher\r\n".encode(),
    b"From: a@x.com\r\nSubject: folded\r\n  over two lines\r\n\r\nbody",
    b"From: a@x.com\r\nnot a header line\r\nSubject: late\r\n\r\nbody\r\n",  # the full parser decides
    b"From: a@x.com\r\nSubject: no body\r\n",
    b"From: a@x.com\r\n\r\n\r\nbody after an empty first line\r\n",
    b"From: a@x.com\rSubject: bare CR\r\rbody\r",
    # header blocks the fast header read must split as the parser does, or leave to it
    b"From: a@x.com\r\nSubject:\r\n only a continuation\r\n\tand a tab one\r\n\r\nbody\r\n",
    b"From: a@x.com\r\nX-Empty:\r\nX-Spaces: \t  padded  \t\r\nX-Colons: a: b: c\r\n\r\nbody\r\n",
    b"From sender@x.com Mon Nov 23 09:00:00 2026\r\nFrom: a@x.com\r\n\r\nenvelope line first\r\n",
    b"From: a@x.com\r\nFrom sender@x.com Mon Nov 23 09:00:00 2026\r\nTo: b@x.com\r\n\r\nenvelope inside\r\n",
    b" continued first\r\nFrom: a@x.com\r\n\r\nbody\r\n",
    b"From: a@x.com\r\n: no name\r\nTo: b@x.com\r\n\r\nbody\r\n",
    b"From: a@x.com\r\nSubject: a bare\rCR inside\r\n\r\nbody\r\n",
    b"From: a@x.com\nSubject: lf\r\nTo: b@x.com\n\r\nmixed endings\r\n",
    b"From: a@x.com\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-8bit: \xe9t\xe9\r\n\r\nbody\r\n",
    b"From: a@x.com\r\nBad Name: spaced\r\n\r\nbody\r\n",
    b"\r\n\r\nno headers at all\r\n",
    b"From: a@x.com\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@x.com\r\n\r\ninner\r\n",
]


@pytest.mark.parametrize("raw", SINGLE_PART + [multipart(b"<p>hi</p>", b"pdf")])
def test_the_header_first_read_is_the_full_parse(raw):
    fast, full = read_message(raw), BytesParser(policy=policy.compat32).parsebytes(raw)
    assert fast.items() == full.items()
    assert fast.get_payload(decode=True) == full.get_payload(decode=True)
    assert [type(d) for d in fast.defects] == [type(d) for d in full.defects]
    assert fast.is_multipart() == full.is_multipart()
    assert fast.get_unixfrom() == full.get_unixfrom()
    assert fast.get_content_type() == full.get_content_type()
