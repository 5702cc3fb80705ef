"""POP3 against real Dovecot: mailboxes configured through ingest, mail attached to the right records."""
import datetime as dt
import uuid

import pytest

from schemas import CrmModule, CrmOp
from tests.fixtures.net import wait_for
from tests.integration.test_mail_support import MailWorld, by_record, mail, pop3_mailbox, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def world(settings, ingest, kafka_bootstrap) -> MailWorld:
    return MailWorld(settings, ingest, kafka_bootstrap)


def new_user(dovecot, password="secret-1") -> str:
    username = "u" + uuid.uuid4().hex[:10]
    dovecot.add_user(username, password)
    return username


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
def test_mail_is_attached_to_leads_contacts_and_deals_threaded(world, dovecot, start_service, security):
    world.crm(world.record(CrmModule.LEADS, "L1", Email="Lena@Lead.example"),
              world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"),
              world.record(CrmModule.DEALS, "D1", Contact_Name={"id": "C1", "name": "Carl"}),
              world.record(CrmModule.CONTACTS, "C2"))  # no address: gets no mail
    worker = start_service("services.mail_fetch", **worker_env(dovecot))
    world.wait_indexed("lena@lead.example", "L1")
    world.wait_indexed("carl@contact.example", "C1")
    user = new_user(dovecot)
    first = mail('"Lena" <lena@lead.example>', f"{user}@mail.example.com", "Offer", message_id="<offer@lead>")
    reply = mail(f"{user}@mail.example.com", "Lena <LENA@lead.example>", "Re: Offer", cc="carl@contact.example",
                 message_id="<reply@me>", in_reply_to="<offer@lead>", references="<offer@lead>")
    for raw in (first, reply, mail("stranger@nowhere.example", f"{user}@mail.example.com", "Spam")):
        dovecot.deliver(user, raw)
    dovecot.deliver(user, b"this is not a mail message at all\r\n")

    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1", security), mode="shared")
    commands = world.wait_commands(4, worker=worker)
    grouped = by_record(commands)
    assert sorted(grouped) == [("Contacts", "C1"), ("Deals", "D1"), ("Leads", "L1")]
    assert [c.action.subject for c in grouped[("Leads", "L1")]] == ["Offer", "Re: Offer"]
    assert {c.action.thread_id for c in commands} == {"<offer@lead>"}
    deal = grouped[("Deals", "D1")][0].action
    assert deal.subject == "Re: Offer" and deal.cc == ["carl@contact.example"]
    assert (deal.visibility, deal.owner_id, deal.mailbox) == ("shared", "owner1", f"{user}@{dovecot.host}")
    assert len({c.idempotency_key for c in commands}) == 4
    [letter] = world.dead_letters()
    assert "no header" in letter.reason and letter.worker == "mail_fetch"
    assert world.status("owner1")["state"] == "ok"

    # Another poll (woken by a config change) fetches only what is new, and nothing is deleted.
    dovecot.deliver(user, mail("carl@contact.example", f"{user}@mail.example.com", "Later"))
    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1", security), mode="shared")
    commands = world.wait_commands(6, worker=worker)
    assert len(commands) == 6 and len({c.idempotency_key for c in commands}) == 6
    assert dovecot.message_count(user) == 5


def test_a_changed_address_links_only_later_mail_and_a_deactivated_owner_hides_mail(world, dovecot, start_service):
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="first@x.example"))
    worker = start_service("services.mail_fetch", **worker_env(dovecot))
    world.wait_indexed("first@x.example", "C1")
    changed_at = dt.datetime.now(dt.UTC)
    world.crm(world.record(CrmModule.CONTACTS, "C1", CrmOp.UPDATED, changed_at, Email="second@x.example"))
    world.wait_indexed("second@x.example", "C1")
    user = new_user(dovecot)
    dovecot.deliver(user, mail("second@x.example", "me@x", "Before the change", date=old))
    dovecot.deliver(user, mail("first@x.example", "me@x", "Old address, after the change"))
    dovecot.deliver(user, mail("second@x.example", "me@x", "After the change"))
    world.configure("owner2", pop3_mailbox(dovecot, user, "secret-1"))
    [command] = world.wait_commands(1, worker=worker)
    assert command.action.subject == "After the change"

    # The owner is deactivated in the CRM: their mailbox is not fetched, its mail stays hidden.
    world.crm(world.record(CrmModule.USERS, "owner2", CrmOp.UPDATED, status="inactive"))
    wait_for(lambda: (world.status("owner2") or {}).get("state") == "paused", 60, what="paused status")
    dovecot.deliver(user, mail("second@x.example", "me@x", "While deactivated"))
    world.crm(world.record(CrmModule.USERS, "owner2", CrmOp.UPDATED, status="active"))
    world.configure("owner2", pop3_mailbox(dovecot, user, "secret-1"))
    commands = world.wait_commands(2, worker=worker)
    assert [c.action.subject for c in commands] == ["After the change", "While deactivated"]
