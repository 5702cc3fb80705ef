"""POP3 failures users meet, and scale: a changed password, a server that is down, two workers on one
set of mailboxes, a worker killed mid-mailbox, 1,000 messages threaded on the right records."""
import datetime as dt
import uuid

import httpx
import pytest

from schemas import CrmModule
from tests.fixtures.net import free_port, wait_for
from tests.integration.test_mail_support import (
    MailWorld,
    by_record,
    mail,
    pop3_mailbox,
    users_on_every_partition,
    wait_assigned,
    worker_env,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def world(settings, ingest, kafka_bootstrap) -> MailWorld:
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    return world


def start_worker(world, start_service, dovecot):
    worker = start_service("services.mail_fetch", **worker_env(dovecot))
    world.wait_indexed("carl@contact.example", "C1")
    return worker


def new_user(dovecot, password="secret-1") -> str:
    username = "u" + uuid.uuid4().hex[:10]
    dovecot.add_user(username, password)
    return username


def state_of(world, user) -> str | None:
    return (world.status(user) or {}).get("state")


def test_a_changed_password_is_auth_failed_with_the_reason_until_the_config_is_updated(world, dovecot, start_service):
    user = new_user(dovecot)
    worker = start_worker(world, start_service, dovecot)
    dovecot.deliver(user, mail("carl@contact.example", "me@x", "One"))
    world.configure("o1", pop3_mailbox(dovecot, user, "secret-1"))
    world.wait_commands(1, worker=worker)

    dovecot.set_password(user, "secret-2")
    dovecot.deliver(user, mail("carl@contact.example", "me@x", "Two"))
    wait_for(lambda: state_of(world, user="o1") == "auth_failed", 60, what="auth_failed status")
    status = world.status("o1")
    assert "refused the login" in status["reason"] and "Authentication failed" in status["reason"]

    world.configure("o1", pop3_mailbox(dovecot, user, "secret-2"))
    commands = world.wait_commands(2, worker=worker)
    assert [c.action.subject for c in commands] == ["One", "Two"]
    wait_for(lambda: state_of(world, "o1") == "ok", 30, what="ok status")


def test_a_server_that_is_down_is_retried_and_reported(world, dovecot, start_service):
    worker = start_worker(world, start_service, dovecot)
    down = pop3_mailbox(dovecot, "nobody", "x", "none", port=free_port())
    world.configure("o2", down)
    wait_for(lambda: state_of(world, "o2") == "unreachable", 60, what="unreachable status")
    assert "cannot connect" in world.status("o2")["reason"]
    user = new_user(dovecot)
    dovecot.deliver(user, mail("carl@contact.example", "me@x", "Back"))
    world.configure("o2", pop3_mailbox(dovecot, user, "secret-1"))
    world.wait_commands(1, worker=worker)
    wait_for(lambda: state_of(world, "o2") == "ok", 30, what="ok status")


def test_two_workers_fetch_each_message_once(world, dovecot, start_service, settings):
    owners = users_on_every_partition(world.org, settings.topic_partitions)
    users = [new_user(dovecot) for _ in owners]
    for n, user in enumerate(users):
        for i in range(5):
            dovecot.deliver(user, mail("carl@contact.example", "me@x", f"m{n}-{i}"))
    first = start_worker(world, start_service, dovecot)
    second = start_worker(world, start_service, dovecot)
    wait_assigned(first, second)
    for owner, user in zip(owners, users):
        world.configure(owner, pop3_mailbox(dovecot, user, "secret-1"))
    world.wait_commands(5 * len(users), worker=first)
    for n, user in enumerate(users):
        dovecot.deliver(user, mail("carl@contact.example", "me@x", f"late-{n}"))
    commands = world.wait_commands(6 * len(users), worker=second)
    subjects = [c.action.subject for c in commands]
    assert len(subjects) == len(set(subjects)) == 6 * len(users)
    assert "mail fetched" in first.log() and "mail fetched" in second.log(), "both workers own mailboxes"


def test_a_worker_killed_mid_mailbox_loses_nothing_and_duplicates_nothing(world, dovecot, start_service):
    user = new_user(dovecot)
    for i in range(600):
        dovecot.deliver(user, mail("carl@contact.example", "me@x", f"k{i}", body="x" * 2000))
    victim = start_worker(world, start_service, dovecot)
    world.configure("o1", pop3_mailbox(dovecot, user, "secret-1"))
    wait_for(lambda: len(world.commands()) >= 100, 120, what="the fetch under way")
    victim.kill()
    survivor = start_worker(world, start_service, dovecot)
    commands = world.wait_commands(600, 180, worker=survivor)
    keys = {c.idempotency_key for c in commands}
    assert len(keys) == 600, "every message attached"
    assert {c.action.subject for c in commands} == {f"k{i}" for i in range(600)}
    # At most the batch in flight at the kill is published again, under the same keys: the CRM applies it once.
    assert len(commands) - len(keys) <= 100


def test_a_thousand_messages_arrive_threaded_on_the_right_records(world, dovecot, start_service):
    world.crm(world.record(CrmModule.LEADS, "L1", Email="lena@lead.example"),
              world.record(CrmModule.DEALS, "D1", Contact_Name="C1"))
    user = new_user(dovecot)
    for t in range(100):  # 100 threads of 10: a root and 9 replies, alternating parties
        for i in range(10):
            sender = "lena@lead.example" if t % 2 else "carl@contact.example"
            refs = " ".join(f"<t{t}-{j}@x>" for j in range(i))
            dovecot.deliver(user, mail(sender, "me@x", f"thread {t}", message_id=f"<t{t}-{i}@x>",
                                       in_reply_to=f"<t{t}-{i - 1}@x>" if i else None, references=refs or None))
    worker = start_worker(world, start_service, dovecot)
    world.wait_indexed("lena@lead.example", "L1")
    world.configure("o1", pop3_mailbox(dovecot, user, "secret-1"))
    commands = world.wait_commands(1500, 240, worker=worker)
    grouped = by_record(commands)
    assert len(grouped[("Leads", "L1")]) == 500
    assert len(grouped[("Contacts", "C1")]) == len(grouped[("Deals", "D1")]) == 500
    for command in commands:
        t = int(command.action.subject.split()[1])
        assert command.action.thread_id == f"<t{t}-0@x>"
        assert command.action.module == ("Leads" if t % 2 else "Contacts") or command.action.module == "Deals"


def test_a_deleted_config_takes_its_encrypted_password_along_and_stops_fetching(world, dovecot, start_service):
    user = new_user(dovecot)
    worker = start_worker(world, start_service, dovecot)
    dovecot.deliver(user, mail("carl@contact.example", "me@x", "Before"))
    sealed = world.configure("o1", pop3_mailbox(dovecot, user, "secret-1"))
    assert sealed["mailbox"]["password_set"] is True
    world.wait_commands(1, worker=worker)

    world.remove("o1")
    wait_for(lambda: "mailbox removed" in worker.log() and f"{world.org}:o1:mail" in worker.log(), 30,
             what="the worker removed the mailbox")
    client = world.redis()
    assert not [k for k in client.scan_iter(match=f"crmsync:*{world.org}*o1*") if "mailseen" not in k
                and "status" not in k], "nothing of the configuration (nor its password) is left in Redis"
    headers = {"Authorization": f"Bearer {world.settings.admin_token}"}
    assert httpx.get(f"{world.ingest.url}/v1/orgs/{world.org}/users/o1/integrations/mail",
                     headers=headers).status_code == 404
    # Configured again without a password: the old one is gone, so it must be given anew.
    again = httpx.put(f"{world.ingest.url}/v1/orgs/{world.org}/users/o1/integrations/mail", headers=headers,
                      json={"enabled": True, "mailbox": {k: v for k, v in pop3_mailbox(dovecot, user, "x").items()
                                                          if k != "password"}})
    assert again.status_code == 422 and "mailbox.password" in again.text

    dovecot.deliver(user, mail("carl@contact.example", "me@x", "After"))
    readded = dt.datetime.now(dt.UTC)
    world.configure("o1", pop3_mailbox(dovecot, user, "secret-1"))
    commands = world.wait_commands(2, worker=worker)
    assert [c.action.subject for c in commands] == ["Before", "After"]
    assert commands[1].issued_at >= readded, "mail that came after the removal waited for the new configuration"
