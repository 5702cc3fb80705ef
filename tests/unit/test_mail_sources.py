"""Which mailbox a configuration fetches (fleet.mailbox_source): a change of it replaces the poller."""
import datetime as dt

from schemas import GmailMailbox, IntegrationConfig, Pop3Mailbox
from services.mail_fetch.fleet import mailbox_source


def config(mailbox, **extra) -> IntegrationConfig:
    return IntegrationConfig(org_id="o", user_id="u", integration="mail", enabled=True, mailbox=mailbox,
                             updated_at=dt.datetime(2026, 11, 23, tzinfo=dt.UTC), **extra)


def pop3(**extra) -> Pop3Mailbox:
    values = {"host": "pop.example", "port": 995, "security": "tls", "username": "ann", "password_encrypted": "x"}
    return Pop3Mailbox(**{**values, **extra})


def test_a_gmail_address_is_its_source_whatever_its_case():
    assert mailbox_source(config(GmailMailbox(address="Ann@Gmail.example"))) == ("gmail", "ann@gmail.example")
    assert (mailbox_source(config(GmailMailbox(address="ann@gmail.example")))
            != mailbox_source(config(GmailMailbox(address="bob@gmail.example"))))


def test_pop3_server_port_and_user_name_the_source_not_its_settings():
    same = mailbox_source(config(pop3()))
    assert mailbox_source(config(pop3(password_encrypted="y", poll_interval_s=600))) == same
    assert mailbox_source(config(pop3(), mailbox_mode="shared")) == same
    for other in (pop3(host="other.example"), pop3(port=110), pop3(username="bob")):
        assert mailbox_source(config(other)) != same


def test_kinds_differ():
    assert mailbox_source(config(pop3(username="a@gmail.example"))) != mailbox_source(
        config(GmailMailbox(address="a@gmail.example")))
