"""Re-linking earlier mail: the org's setting through ingest's admin API, and a changed address that gets
the mail already fetched only where the org turned re-linking on (against real Dovecot)."""
import datetime as dt
import uuid

import httpx
import pytest

from schemas import CrmModule, CrmOp, EmailAttachmentInfo
from services.common.state import connect
from services.mail_fetch.commands import MailboxRef
from services.mail_fetch.kept_mail import KEEP_PER_ADDRESS, KEEP_S, KeptMail, KeptMessage
from tests.fixtures.net import wait_for
from tests.integration.test_mail_support import MailWorld, by_record, mail, pop3_mailbox, worker_env

pytestmark = pytest.mark.integration


def settings_url(world: MailWorld) -> str:
    return f"{world.ingest.url}/v1/orgs/{world.org}/mail-settings"


def set_relink(world: MailWorld, enabled: bool) -> httpx.Response:
    return httpx.put(settings_url(world), json={"relink_earlier_mail": enabled},
                     headers={"Authorization": f"Bearer {world.settings.admin_token}"})


def test_the_relink_setting_is_admin_only_validated_and_read_back(settings, ingest, kafka_bootstrap):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    assert httpx.get(settings_url(world), headers=admin).json()["relink_earlier_mail"] is False

    anonymous = httpx.put(settings_url(world), json={"relink_earlier_mail": True})
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    for body in ({}, {"relink_earlier_mail": "sometimes"}, {"relink_earlier_mail": True, "other": 1}):
        refused = httpx.put(settings_url(world), json=body, headers=admin)
        assert refused.status_code == 422, body
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/invalid-body")
    bad_org = httpx.put(f"{ingest.url}/v1/orgs/bad%20org/mail-settings", json={"relink_earlier_mail": True},
                        headers=admin)
    assert bad_org.status_code == 422
    assert httpx.get(settings_url(world), headers=admin).json()["relink_earlier_mail"] is False

    turned_on = set_relink(world, True)
    assert turned_on.status_code == 200, turned_on.text
    assert turned_on.json()["relink_earlier_mail"] is True
    assert turned_on.json()["relinkable_mail"]["kept_while_on"] is True
    assert httpx.get(settings_url(world), headers=admin).json()["relink_earlier_mail"] is True
    assert set_relink(world, False).json()["relink_earlier_mail"] is False
    assert httpx.get(settings_url(world), headers=admin).json()["relink_earlier_mail"] is False


def fetched_once(world: MailWorld, owner: str):
    """The mailbox has been through a fetch: its status says how that went."""
    wait_for(lambda: (world.status(owner) or {}).get("state") == "ok", 60, what=f"{owner}'s mailbox fetched")


@pytest.mark.parametrize("relink", [True, False])
def test_a_changed_address_gets_earlier_fetched_mail_only_where_the_org_relinks(
        settings, ingest, kafka_bootstrap, dovecot, start_service, relink):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    assert set_relink(world, relink).status_code == 200
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="first@x.example"),
              world.record(CrmModule.DEALS, "D1", Contact_Name={"id": "C1"}))
    worker = start_service("services.mail_fetch", **worker_env(dovecot))
    world.wait_indexed("first@x.example", "C1")
    user = "u" + uuid.uuid4().hex[:10]
    dovecot.add_user(user, "secret-1")
    earlier = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    dovecot.deliver(user, mail("Second <second@x.example>", "me@x", "Earlier, to the new address", date=earlier))
    dovecot.deliver(user, mail("stranger@x.example", "me@x", "Nobody's"))
    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1"))
    fetched_once(world, "owner1")
    assert world.commands() == [], "no record carries these addresses yet"

    world.crm(world.record(CrmModule.CONTACTS, "C1", CrmOp.UPDATED, Email="second@x.example"))
    world.wait_indexed("second@x.example", "C1")  # re-linking publishes before the index moves
    if not relink:
        assert world.commands() == [], "without re-linking, the new address links only later mail"
        return
    commands = world.wait_commands(2, worker=worker)
    grouped = by_record(commands)
    assert sorted(grouped) == [("Contacts", "C1"), ("Deals", "D1")]
    for command in commands:
        action = command.action
        assert action.subject == "Earlier, to the new address" and action.date == earlier
        assert (action.from_address, action.visibility, action.owner_id) == ("second@x.example", "private", "owner1")
        assert action.body_text == "Hi there"
    assert len({c.idempotency_key for c in commands}) == 2

    # Later mail of the address arrives as usual; the re-linked message is not attached twice.
    dovecot.deliver(user, mail("second@x.example", "me@x", "Later"))
    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1"))
    commands = world.wait_commands(4, worker=worker)
    assert sorted(c.action.subject for c in commands) == ["Earlier, to the new address"] * 2 + ["Later"] * 2


@pytest.mark.parametrize("relink", [True, False])
def test_a_deal_whose_primary_contact_changes_gets_the_new_contacts_mail(
        settings, ingest, kafka_bootstrap, dovecot, start_service, relink):
    """Later mail follows the new primary contact; mail fetched before the change reaches the deal only
    where the org re-links."""
    world = MailWorld(settings, ingest, kafka_bootstrap)
    assert set_relink(world, relink).status_code == 200
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="first@x.example"),
              world.record(CrmModule.CONTACTS, "C2", Email="second@x.example"),
              world.record(CrmModule.DEALS, "D1", Contact_Name={"id": "C1"}))
    worker = start_service("services.mail_fetch", **worker_env(dovecot))
    world.wait_indexed("first@x.example", "C1")
    world.wait_indexed("second@x.example", "C2")
    client = world.redis()
    wait_for(lambda: client.get(f"crmsync:mailindex:{world.org}:deal:D1") == "C1", 60, what="D1's contact indexed")
    user = "u" + uuid.uuid4().hex[:10]
    dovecot.add_user(user, "secret-1")
    dovecot.deliver(user, mail("second@x.example", "me@x", "Second's, before"))
    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1"))
    [before] = world.wait_commands(1, worker=worker)
    assert (before.action.module, before.action.record_id) == ("Contacts", "C2")

    world.crm(world.record(CrmModule.DEALS, "D1", CrmOp.UPDATED, Contact_Name={"id": "C2"}))
    wait_for(lambda: client.get(f"crmsync:mailindex:{world.org}:deal:D1") == "C2", 60, what="D1's new contact")
    relinked = [("Deals", "D1")] if relink else []  # re-linking publishes before the index moves
    assert [key for key in by_record(world.commands()) if key[0] == "Deals"] == relinked

    dovecot.deliver(user, mail("second@x.example", "me@x", "Second's, after"))
    dovecot.deliver(user, mail("first@x.example", "me@x", "First's, after"))
    world.configure("owner1", pop3_mailbox(dovecot, user, "secret-1"))
    commands = world.wait_commands(4 + len(relinked), worker=worker)
    grouped = {k: sorted(c.action.subject for c in v) for k, v in by_record(commands).items()}
    assert grouped[("Deals", "D1")] == (["Second's, after", "Second's, before"] if relink else ["Second's, after"])
    assert grouped[("Contacts", "C1")] == ["First's, after"]
    assert grouped[("Contacts", "C2")] == ["Second's, after", "Second's, before"]
    assert len({c.idempotency_key for c in commands}) == len(commands)


async def test_kept_mail_is_bounded_per_address_and_read_back_whole(redis_url):
    redis, org = connect(redis_url), f"kept-{uuid.uuid4().hex[:8]}"
    mailbox = MailboxRef(org, "owner1", "owner1@mail.example.com", "shared")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    def message(n: int) -> KeptMessage:
        fields = {"message_id": f"<m{n}@x>", "thread_id": "<m0@x>", "from_address": "ann:quoted@x.example",
                  "to": ["me@x"], "cc": [], "subject": f"m{n}", "date": start + dt.timedelta(minutes=n),
                  "body_text": "Grüße " * 50, "visibility": "shared", "owner_id": "owner1",
                  "mailbox": mailbox.name, "attachments": [EmailAttachmentInfo(name="a.pdf", size=10)]}
        return KeptMessage(mailbox, f"<m{n}@x>", fields)

    try:
        kept = KeptMail(redis)
        messages = [message(n) for n in range(KEEP_PER_ADDRESS + 5)]
        await kept.keep(org, [(m, ["ann:quoted@x.example", "me@x"], m.fields["date"]) for m in messages])
        found = await kept.carrying(org, "ann:quoted@x.example")
        assert len(found) == KEEP_PER_ADDRESS, "only the newest messages of an address are kept"
        assert found[0] == messages[-1] and found[-1] == messages[5], "newest first, whole"
        assert await kept.carrying(org, "nobody@x") == []
        ttl = await redis.ttl(f"crmsync:mailkept:{org}:addr:ann%3Aquoted@x.example")
        assert 0 < ttl <= KEEP_S
    finally:
        async for name in redis.scan_iter(match=f"crmsync:mailkept:{org}:*"):
            await redis.delete(name)
        await redis.aclose()
