"""What the mail_fetch integration tests share (no tests here): an org with CRM records, mailboxes
configured through ingest's admin API, and reading back the commands mail_fetch published.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
from dataclasses import dataclass, field

import httpx
import redis
from aiokafka.partitioner import DefaultPartitioner

from schemas import CrmChange, CrmCommand, CrmModule, CrmOp, DeadLetter
from services.common.bus import Bus
from tests.fixtures.net import wait_for
from tests.fixtures.topics import read_topic
from tests.support.factories import crm_change, unique_org

_numbers = itertools.count(1)


def mail(sender: str, to: str, subject: str = "Hello", *, cc: str | None = None, message_id: str | None = None,
         in_reply_to: str | None = None, references: str | None = None, body: str = "Hi there",
         date: dt.datetime | None = None) -> bytes:
    """A simple RFC 2822 message; message_id "" leaves the header out."""
    number = next(_numbers)
    headers = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
               f"Date: {email.utils.format_datetime(date or dt.datetime.now(dt.UTC))}"]
    if cc:
        headers.append(f"Cc: {cc}")
    if message_id != "":
        headers.append(f"Message-ID: {message_id or f'<test-{number}@mail.example.com>'}")
    if in_reply_to:
        headers.append(f"In-Reply-To: {in_reply_to}")
    if references:
        headers.append(f"References: {references}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


@dataclass
class MailWorld:
    settings: object
    ingest: object
    kafka_bootstrap: str
    org: str = field(default_factory=unique_org)

    # --- CRM side -------------------------------------------------------------------------------
    def crm(self, *changes: CrmChange) -> None:
        async def publish():
            bus = Bus(self.settings)
            await bus.start()
            try:
                for change in changes:
                    await bus.publish("crm.changes", change.key, change)
            finally:
                await bus.stop()

        asyncio.run(publish())

    def record(self, module: CrmModule, record_id: str, op: CrmOp = CrmOp.CREATED,
               modified_at: dt.datetime | None = None, **fields) -> CrmChange:
        return crm_change(self.org, record_id=record_id, module=module, op=op, fields=fields,
                          modified_at=modified_at or dt.datetime.now(dt.UTC))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True)

    def wait_indexed(self, address: str, record_id: str, timeout_s: float = 60) -> None:
        client = self.redis()
        wait_for(lambda: any(f.endswith("/" + record_id) for f in
                             client.hkeys(f"crmsync:mailindex:{self.org}:addr:{address}")),
                 timeout_s, what=f"{address} indexed on {record_id}")

    # --- mailboxes ------------------------------------------------------------------------------
    def configure(self, user: str, mailbox: dict, mode: str = "private", enabled: bool = True) -> dict:
        r = httpx.put(f"{self.ingest.url}/v1/orgs/{self.org}/users/{user}/integrations/mail",
                      json={"enabled": enabled, "mailbox": mailbox, "mailbox_mode": mode},
                      headers={"Authorization": f"Bearer {self.settings.admin_token}"})
        assert r.status_code == 200, r.text
        return r.json()

    def remove(self, user: str) -> None:
        httpx.delete(f"{self.ingest.url}/v1/orgs/{self.org}/users/{user}/integrations/mail",
                     headers={"Authorization": f"Bearer {self.settings.admin_token}"})

    def status(self, user: str) -> dict | None:
        r = httpx.get(f"{self.ingest.url}/v1/orgs/{self.org}/users/{user}/integrations/mail",
                      headers={"Authorization": f"Bearer {self.settings.admin_token}"})
        return r.json()["status"]

    # --- reading back -----------------------------------------------------------------------------
    def commands(self) -> list[CrmCommand]:
        out = [CrmCommand.from_bytes(r.value) for r in read_topic(self.kafka_bootstrap, "crm.commands", 60)]
        return [c for c in out if c.org_id == self.org and c.action.kind == "attach_email"]

    def wait_commands(self, count: int, timeout_s: float = 60, worker=None) -> list[CrmCommand]:
        def enough():
            found = self.commands()
            return found if len(found) >= count else None

        log = (lambda: worker.log()[-3000:]) if worker is not None else (lambda: "")
        try:
            return wait_for(enough, timeout_s, interval_s=0.3, what=f"{count} attach_email commands")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; have {len(self.commands())}; worker log:\n{log()}") from None

    def dead_letters(self) -> list[DeadLetter]:
        letters = [DeadLetter.from_bytes(r.value) for r in read_topic(self.kafka_bootstrap, "mail.messages.dlq")]
        return [d for d in letters if d.key and d.key.startswith(self.org + ":")]


def pop3_mailbox(dovecot, username: str, password: str, security: str = "tls", **extra) -> dict:
    port = dovecot.pop3s_port if security == "tls" else dovecot.pop3_port
    return {"kind": "pop3", "host": dovecot.host, "port": port, "security": security, "username": username,
            "password": password, "poll_interval_s": 5, **extra}


def worker_env(dovecot) -> dict[str, str]:
    """The worker trusts the test CA for POP3S/STARTTLS, as an operator would point it at theirs."""
    return {"SSL_CERT_FILE": str(dovecot.tls.ca_cert)}


def by_record(commands: list[CrmCommand]) -> dict[tuple[str, str], list[CrmCommand]]:
    grouped: dict[tuple[str, str], list[CrmCommand]] = {}
    for command in commands:
        grouped.setdefault((command.action.module, command.action.record_id), []).append(command)
    return grouped


def users_on_every_partition(org: str, partitions: int, per_partition: int = 2, prefix: str = "o") -> list[str]:
    """User ids whose mailbox keys (org:user:mail) land on every config partition, so that any split of
    the partitions between workers gives each of them mailboxes."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    found: dict[int, list[str]] = {p: [] for p in every}
    for n in itertools.count():
        user = f"{prefix}{n}"
        partition = partitioner(f"{org}:{user}:mail".encode(), every, every)
        if len(found[partition]) < per_partition:
            found[partition].append(user)
        if all(len(users) == per_partition for users in found.values()):
            return [user for users in found.values() for user in users]


def wait_assigned(*workers) -> None:
    """Until every worker holds config partitions: mailboxes configured now are spread over all of them."""
    def holds_partitions(worker) -> bool:
        assigned = [line for line in worker.log().splitlines() if "mailbox partitions assigned" in line]
        return bool(assigned) and "partitions=[]" not in assigned[-1]

    for worker in workers:
        wait_for(lambda w=worker: holds_partitions(w), 60, what="mailbox partitions assigned")

