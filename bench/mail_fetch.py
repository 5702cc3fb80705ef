"""mail_fetch throughput: 10,000 messages across 20 POP3 mailboxes on a real Dovecot, from the server to
attach_email commands on the bus, against a plain poplib loop that only RETRs the same messages in the
same run. Target: mail_fetch at least half the plain loop's rate.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import poplib
import shutil
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer

from bench._infra import broker_and_redis, service
from sandbox.tls import ensure_certificates
from schemas import ChangeSource, CrmChange, CrmModule, CrmOp, IntegrationConfig, Pop3Mailbox
from services.common.bus import Bus
from services.common.secrets import SecretBox
from services.common.settings import DEV_FERNET_KEY, Settings
from services.common.topics import ensure_topics
from tests.fixtures.dovecot import Dovecot

MAILBOXES = 20
PER_MAILBOX = 500
CONTACTS = 200
ORG = "bench-mail"
TARGET_RATIO = 0.5


def _message(mailbox: int, n: int) -> bytes:
    contact = (mailbox * PER_MAILBOX + n) % CONTACTS
    return (f"From: Contact {contact} <contact{contact}@bench.example>\r\nTo: user{mailbox}@bench.example\r\n"
            f"Subject: message {n}\r\nMessage-ID: <b{mailbox}-{n}@bench.example>\r\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\n" + "Body line of a typical short mail.\r\n" * 40).encode()


def _plain_poplib_rate(dovecot: Dovecot, users: list[str]) -> float:
    started = time.perf_counter()
    count = 0
    for user in users:
        client = poplib.POP3(dovecot.host, dovecot.pop3_port)
        client.user(user)
        client.pass_("bench")
        for line in client.uidl()[1]:
            client.retr(int(line.split()[0]))
            count += 1
        client.quit()
    return count / (time.perf_counter() - started)


async def _publish_setup(settings: Settings, dovecot: Dovecot, users: list[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    bus = Bus(settings)
    await bus.start()
    try:
        for c in range(CONTACTS):
            change = CrmChange(org_id=ORG, module=CrmModule.CONTACTS, record_id=f"C{c}", op=CrmOp.CREATED,
                               owner_id="u0", source=ChangeSource.UI, modified_at=now,
                               fields={"Email": f"contact{c}@bench.example"})
            await bus.publish("crm.changes", change.key, change)
    finally:
        await bus.stop()


async def _publish_configs(settings: Settings, dovecot: Dovecot, users: list[str]) -> None:
    box = SecretBox(settings.fernet_key_list)
    bus = Bus(settings)
    await bus.start()
    try:
        for n, user in enumerate(users):
            config = IntegrationConfig(
                org_id=ORG, user_id=f"u{n}", integration="mail", enabled=True, updated_at=dt.datetime.now(dt.UTC),
                mailbox=Pop3Mailbox(host=dovecot.host, port=dovecot.pop3_port, security="none", username=user,
                                    password_encrypted=box.encrypt("bench"), poll_interval_s=60))
            await bus.publish("integration.configs", config.key, config)
    finally:
        await bus.stop()


def _wait_indexed(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + 120
    while not client.exists(f"crmsync:mailindex:{ORG}:addr:contact{CONTACTS - 1}@bench.example"):
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not build the address index")
        time.sleep(0.1)


def _count_commands(bootstrap: str, expected: int, timeout_s: float = 600) -> float:
    """Seconds until `expected` commands are on crm.commands, counted from the call."""
    started = time.perf_counter()
    consumer = KafkaConsumer("crm.commands", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=50)
    seen = 0
    try:
        while seen < expected:
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"only {seen} of {expected} commands within {timeout_s}s")
            for records in consumer.poll(timeout_ms=200).values():
                seen += len(records)
    finally:
        consumer.close()
    return time.perf_counter() - started


def run() -> dict:
    root = Path(tempfile.mkdtemp(prefix="crmsync-bench-dovecot-"))
    root.chmod(0o755)
    dovecot = Dovecot(root, ensure_certificates(root / "tls")).start()
    try:
        users = [f"bench{n}" for n in range(MAILBOXES)]
        for n, user in enumerate(users):
            dovecot.add_user(user, "bench")
            for i in range(PER_MAILBOX):
                dovecot.deliver(user, _message(n, i))
        plain_rate = _plain_poplib_rate(dovecot, users)
        with broker_and_redis() as (bootstrap, redis_url):
            settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, fernet_keys=DEV_FERNET_KEY)
            asyncio.run(ensure_topics(bootstrap, settings.topic_partitions))
            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url, "CRMSYNC_LOG_LEVEL": "WARNING"}
            with service("services.mail_fetch", env):
                asyncio.run(_publish_setup(settings, dovecot, users))
                _wait_indexed(redis_url)
                started = time.perf_counter()
                asyncio.run(_publish_configs(settings, dovecot, users))
                _count_commands(bootstrap, MAILBOXES * PER_MAILBOX)
                elapsed = time.perf_counter() - started
        mail_rate = MAILBOXES * PER_MAILBOX / elapsed
        return {
            "messages": MAILBOXES * PER_MAILBOX,
            "plain_poplib_retr_per_s": round(plain_rate, 1),
            "mail_fetch_pop3_to_commands_per_s": round(mail_rate, 1),
            "pop3_ratio": round(mail_rate / plain_rate, 3),
            "targets": {"pop3_ratio": TARGET_RATIO},
        }
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    print(run())
