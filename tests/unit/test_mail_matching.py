"""Matching, threading, the index rules and the attach_email commands: the pure core of mail_fetch."""
import datetime as dt

from schemas import CrmChange, CrmModule, CrmOp
from services.mail_fetch.commands import MailboxRef, attach_email_commands, idempotency_key
from services.mail_fetch.index_rules import address_change, primary_contact, user_is_active
from services.mail_fetch.matching import AddressLink, RecordRef, records_for_message
from services.mail_fetch.parsing import parse_message
from services.mail_fetch.threads import thread_id
from tests.support.factories import crm_change

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
LEAD, CONTACT = RecordRef(CrmModule.LEADS, "L1"), RecordRef(CrmModule.CONTACTS, "C1")
OTHER_CONTACT = RecordRef(CrmModule.CONTACTS, "C2")


def test_every_matching_lead_contact_and_primary_contact_deal_gets_the_message():
    links = {"ann@x.com": [AddressLink(LEAD), AddressLink(CONTACT)], "bob@y.com": [AddressLink(OTHER_CONTACT)]}
    deals = {"C1": ["D1", "D2"], "C9": ["D9"]}
    found = records_for_message(["ann@x.com", "bob@y.com", "nobody@z.com"], links, deals, T0)
    assert found == [LEAD, CONTACT, OTHER_CONTACT, RecordRef(CrmModule.DEALS, "D1"), RecordRef(CrmModule.DEALS, "D2")]
    assert records_for_message(["nobody@z.com"], links, deals, T0) == []


def test_a_changed_address_links_only_later_mail_unless_the_org_relinks():
    links = {"new@x.com": [AddressLink(CONTACT, linked_since=T0)]}
    before, after = T0 - dt.timedelta(days=1), T0 + dt.timedelta(seconds=1)
    assert records_for_message(["new@x.com"], links, {}, before) == []
    assert records_for_message(["new@x.com"], links, {}, after) == [CONTACT]
    assert records_for_message(["new@x.com"], links, {}, before, relink=True) == [CONTACT]


def test_mail_dated_in_the_second_of_the_change_counts_as_after_it():
    changed = dt.datetime(2026, 3, 1, 9, 30, 15, 640_000, tzinfo=dt.UTC)
    links = {"new@x.com": [AddressLink(CONTACT, linked_since=changed)]}
    same_second, second_before = changed.replace(microsecond=0), changed.replace(second=14, microsecond=0)
    assert records_for_message(["new@x.com"], links, {}, same_second) == [CONTACT]
    assert records_for_message(["new@x.com"], links, {}, second_before) == []


def test_threads_follow_gmail_then_references_then_known_ancestors():
    root = parse_message(b"From: a@x\r\nMessage-ID: <root@x>\r\n\r\n.")
    reply = parse_message(b"From: b@y\r\nMessage-ID: <r1@y>\r\nIn-Reply-To: <root@x>\r\nReferences: <root@x>\r\n\r\n.")
    cut_short = parse_message(b"From: a@x\r\nMessage-ID: <r2@x>\r\nIn-Reply-To: <r1@y>\r\n\r\n.")
    assert thread_id(root, {}) == "<root@x>"
    assert thread_id(reply, {}) == "<root@x>"
    assert thread_id(cut_short, {}) == "<r1@y>"  # nothing known: its parent is the best guess
    assert thread_id(cut_short, {"<r1@y>": "<root@x>"}) == "<root@x>"
    assert thread_id(cut_short, {"<r1@y>": "<root@x>"}, gmail_thread_id="18c2f") == "18c2f"


def test_commands_one_per_record_with_a_stable_key_per_mailbox_message_and_record():
    message = parse_message(b"From: Ann <ann@x.com>\r\nTo: bob@y.com\r\nSubject: hi\r\nMessage-ID: <m@x>\r\n"
                            b"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nhello")
    mailbox = MailboxRef("org1", "u1", "u1@mail.example.com", "private")
    commands = attach_email_commands(message, [LEAD, CONTACT], mailbox, "<m@x>", T0)
    assert [c.action.record_id for c in commands] == ["L1", "C1"]
    first = commands[0]
    assert first.org_id == "org1" and first.issued_by == "mail"
    assert first.action.kind == "attach_email" and first.action.visibility == "private"
    assert (first.action.owner_id, first.action.mailbox, first.action.subject) == ("u1", "u1@mail.example.com", "hi")
    assert first.action.from_address == "ann@x.com" and first.action.to == ["bob@y.com"]
    again = attach_email_commands(message, [LEAD], mailbox, "<m@x>", T0 + dt.timedelta(hours=1))
    assert again[0].idempotency_key == first.idempotency_key
    assert len({c.idempotency_key for c in commands}) == 2
    other_mailbox = MailboxRef("org1", "u2", "u2@mail.example.com", "shared")
    assert idempotency_key(other_mailbox, "<m@x>", LEAD) != first.idempotency_key
    by_gmail_id = attach_email_commands(message, [LEAD], mailbox, "t", T0, gmail_id="abc")
    assert by_gmail_id[0].idempotency_key != first.idempotency_key


def contact_change(op=CrmOp.UPDATED, **fields) -> CrmChange:
    return crm_change("org1", record_id="C1", module=CrmModule.CONTACTS, op=op, modified_at=T0, fields=fields)


def test_index_rules_for_addresses():
    created = address_change(contact_change(CrmOp.CREATED, Email="Ann@X.com"), set(), known_before=False)
    assert created.added == {"ann@x.com": None} and not created.removed
    changed = address_change(contact_change(Email="new@x.com", Secondary_Email="ann@x.com"), {"ann@x.com"}, True)
    assert changed.added == {"new@x.com": T0} and not changed.removed
    dropped = address_change(contact_change(Email=None), {"ann@x.com"}, True)
    assert dropped.removed == {"ann@x.com"} and not dropped.added
    first_seen = address_change(contact_change(Email="old@x.com"), set(), known_before=False)
    assert first_seen.added == {"old@x.com": None}  # a record we never saw: its address is not new
    deleted = address_change(contact_change(CrmOp.DELETED), {"ann@x.com"}, True)
    assert deleted.removed == {"ann@x.com"}


def test_index_rules_for_deals_and_users():
    deal = crm_change("org1", module=CrmModule.DEALS, fields={"Contact_Name": {"id": "C1", "name": "Ann"}})
    assert primary_contact(deal) == "C1"
    assert primary_contact(deal.model_copy(update={"fields": {"Contact_Name": None}})) is None
    user = crm_change("org1", module=CrmModule.USERS, fields={"status": "active"})
    assert user_is_active(user)
    assert not user_is_active(user.model_copy(update={"fields": {"status": "inactive"}}))
    assert not user_is_active(user.model_copy(update={"op": CrmOp.DELETED}))
