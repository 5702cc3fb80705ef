"""The POP3 adapter's pipelined RETRs against real Dovecot: the same bytes as one RETR at a time, dot-stuffed
lines and large messages included, and a refused RETR inside a window ends the session cleanly."""
import uuid

import pytest

from services.providers.pop3 import PIPELINE_WINDOW, Pop3Account, Pop3Session, Pop3Unavailable
from tests.integration.test_mail_support import mail

pytestmark = pytest.mark.integration


@pytest.fixture
def mailbox(dovecot) -> str:
    user = "p" + uuid.uuid4().hex[:10]
    dovecot.add_user(user, "secret-1")
    for i in range(PIPELINE_WINDOW + 3):
        body = f"line {i}\r\n.starts with a dot\r\n..two dots\r\n" + ("x" * 900 + "\r\n") * (300 if i == 4 else 1)
        dovecot.deliver(user, mail("a@x.example", "b@y.example", f"m{i}", body=body))
    return user


def session(dovecot, user: str) -> Pop3Session:
    return Pop3Session(Pop3Account(dovecot.host, dovecot.pop3_port, "none", user, "secret-1")).open()


def test_pipelined_windows_return_what_single_retrs_return(dovecot, mailbox):
    pop3 = session(dovecot, mailbox)
    try:
        assert pop3.pipelining, "Dovecot announces PIPELINING"
        numbers = [n for n, _ in pop3.uidls()]
        one_by_one = [pop3.retrieve(n) for n in numbers]
        windowed = []
        for start in range(0, len(numbers), PIPELINE_WINDOW):
            windowed += pop3.retrieve_window(numbers[start:start + PIPELINE_WINDOW])
        assert windowed == one_by_one
        assert b"\r\n.starts with a dot\r\n..two dots\r\n" in windowed[0], "dot-stuffing undone"
        assert len(windowed[4]) > 270_000
        sizes = pop3.sizes()
        assert sorted(sizes) == numbers and all(size > 0 for size in sizes.values())
        with pytest.raises(ValueError):
            pop3.retrieve_window(list(range(1, PIPELINE_WINDOW + 2)))
    finally:
        pop3.quit()


def test_a_refused_retr_in_a_window_ends_the_session_as_unavailable(dovecot, mailbox):
    pop3 = session(dovecot, mailbox)
    with pytest.raises(Pop3Unavailable):
        pop3.retrieve_window([1, 9999, 2])
    with pytest.raises(Pop3Unavailable, match="no open session"):
        pop3.retrieve(1)
    assert dovecot.message_count(mailbox) == PIPELINE_WINDOW + 3, "nothing deleted"
