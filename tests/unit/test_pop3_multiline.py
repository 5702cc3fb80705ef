"""Bulk reading of pipelined POP3 answers (pop3.client.read_multiline_answers), fed from byte chunks."""
import poplib

import pytest

from services.providers.pop3.client import read_multiline_answers

ANSWERS = (b"+OK 30 octets\r\nSubject: a\r\n\r\n..dot first\r\nmid\r\n...\r\n.\r\n"
           b"+OK\r\n.\r\n"
           b"+OK 2\r\nx\r\n\r\n.\r\n")


def reader(data: bytes, size: int):
    chunks = [data[i:i + size] for i in range(0, len(data), size)]

    def read(_limit: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    return read


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 4096])
def test_answers_are_split_and_unstuffed_whatever_the_chunking(size):
    read = reader(ANSWERS, size)
    assert read_multiline_answers(read, 3) == [
        b"Subject: a\r\n\r\n.dot first\r\nmid\r\n..\r\n",
        b"\r\n",  # an empty message, as poplib's lines joined give it
        b"x\r\n\r\n",
    ]


def test_an_error_answer_raises_as_poplib_does():
    read = reader(b"+OK\r\nx\r\n.\r\n-ERR no such message\r\n", 4)
    with pytest.raises(poplib.error_proto, match="no such message"):
        read_multiline_answers(read, 2)


def test_a_connection_closed_mid_answer_raises():
    read = reader(b"+OK\r\nhalf a mess", 4)
    with pytest.raises(poplib.error_proto, match="EOF"):
        read_multiline_answers(read, 1)
