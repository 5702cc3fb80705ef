"""mail_fetch throughput, POP3 and Gmail: messages/s from the mail server to attach_email commands on the
bus, each against a plain client that only downloads the same messages, in the same run.

- POP3: 10,000 messages across 20 mailboxes on a real Dovecot, against a plain poplib loop that only
  RETRs them (one session per mailbox, one after the other).
- Gmail: 10,000 messages across 20 sandbox Gmail mailboxes (the sandbox in its own process), against a
  plain loop of messages.get format=raw over one kept-alive connection (listing included, as UIDL is).

Each side is measured ROUNDS times, baseline and mail_fetch alternately, and the medians are compared:
other work on the machine then weighs on both alike. Each mail_fetch round is a fresh org (its own
address index, seen-sets and cursors), so every round fetches every message again; the worker process
stays up across rounds, as a worker in production does.

A round ends when the worker has marked every message seen, which it does only once the broker has
acknowledged the message's commands (acks=all); the bench polls those sets in Redis (cheap), and once
the clock is stopped reads `crm.commands` to check that every command is really there. Counting by
consuming while the clock runs would take CPU the worker needs on a 2-core machine, and the embedded
broker's end offsets (ListOffsets) lag the last batch, so neither is used for timing.
Target: mail_fetch at least half the baseline's rate on both sides.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import poplib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis
from kafka import KafkaConsumer, TopicPartition

from bench._infra import broker_and_redis, free_port, service
from sandbox.tls import ensure_certificates
from schemas import (
    ChangeSource,
    CrmChange,
    CrmModule,
    CrmOp,
    GmailMailbox,
    IntegrationConfig,
    Pop3Mailbox,
)
from services.common.bus import Bus
from services.common.secrets import SecretBox
from services.common.settings import DEV_FERNET_KEY, Settings
from services.common.state import connect
from services.common.tokens import Grant, TokenStore
from services.common.topics import ensure_topics
from services.mail_fetch.mail_state import SeenMessages
from tests.fixtures.dovecot import Dovecot

MAILBOXES = 20
PER_MAILBOX = 500
CONTACTS = 200
ROUNDS = 3
TARGET_RATIO = 0.5
PASSWORD = "bench"


def _message(mailbox: int, n: int) -> bytes:
    contact = (mailbox * PER_MAILBOX + n) % CONTACTS
    return (f"From: Contact {contact} <contact{contact}@bench.example>\r\nTo: user{mailbox}@bench.example\r\n"
            f"Subject: message {n}\r\nMessage-ID: <b{mailbox}-{n}@bench.example>\r\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\n" + "Body line of a typical short mail.\r\n" * 40).encode()


# --- the bus and the index -----------------------------------------------------------------------------


async def _publish(settings: Settings, topic: str, items: list[tuple[str, object]]) -> None:
    bus = Bus(settings)
    await bus.start()
    try:
        for key, message in items:
            await bus.publish(topic, key, message)
    finally:
        await bus.stop()


def _index_contacts(settings: Settings, org: str) -> None:
    """The org's CRM contacts, and a wait until the worker has indexed every one of them (they travel
    on several partitions: the last one published may be indexed first)."""
    now = dt.datetime.now(dt.UTC)
    changes = [CrmChange(org_id=org, module=CrmModule.CONTACTS, record_id=f"C{c}", op=CrmOp.CREATED,
                         owner_id="u0", source=ChangeSource.UI, modified_at=now,
                         fields={"Email": f"contact{c}@bench.example"}) for c in range(CONTACTS)]
    asyncio.run(_publish(settings, "crm.changes", [(c.key, c) for c in changes]))
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    indexed = [f"crmsync:mailindex:{org}:addr:contact{c}@bench.example" for c in range(CONTACTS)]
    deadline = time.monotonic() + 120
    while client.exists(*indexed) < CONTACTS:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not build the address index")
        time.sleep(0.05)


def _configs(org: str, mailboxes: list) -> list[IntegrationConfig]:
    now = dt.datetime.now(dt.UTC)
    return [IntegrationConfig(org_id=org, user_id=f"u{n}", integration="mail", enabled=True, updated_at=now,
                              mailbox=mailbox) for n, mailbox in enumerate(mailboxes)]


def _wait_seen(client: redis.Redis, configs: list[IntegrationConfig], expected: int, timeout_s: float = 600) -> None:
    """Until the mailboxes' seen-sets hold `expected` messages: each is marked after its commands are acked.

    The sets are named from the configurations, so a poll is one SCARD per mailbox. (It was a SCAN of the
    whole keyspace every 20 ms, which grew with every round and cost Redis and this process more CPU
    than the worker's own Redis work, on the 2 cores the worker needs; the plain baseline paid nothing.)
    """
    names = [SeenMessages.of(None, config).key for config in configs]
    deadline = time.monotonic() + timeout_s
    while True:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.scard(name)
            have = sum(pipe.execute())
        if have >= expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{have} of {expected} messages within {timeout_s}s")
        time.sleep(0.02)


class _CommandLog:
    """Reads `crm.commands` from where it left off, counting each org's commands by their key."""

    def __init__(self, bootstrap: str):
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
        partitions = [TopicPartition("crm.commands", p)
                      for p in sorted(self.consumer.partitions_for_topic("crm.commands"))]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        self.counts: dict[bytes, int] = {}

    def confirm(self, org: str, expected: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.counts.get(org.encode(), 0) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.counts.get(org.encode(), 0)} of {expected} commands of {org} on the bus")
            for records in self.consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in records:
                    self.counts[record.key] = self.counts.get(record.key, 0) + 1

    def close(self) -> None:
        self.consumer.close()


def _mail_fetch_rate(settings: Settings, commands: _CommandLog, org: str, mailboxes: list) -> float:
    """Configure the org's mailboxes and time them until every message's commands are on the bus; then
    remove them again, so the worker's later polls do not weigh on the next rounds."""
    _index_contacts(settings, org)
    configs = _configs(org, mailboxes)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    started = time.perf_counter()
    asyncio.run(_publish(settings, "integration.configs", [(c.key, c) for c in configs]))
    _wait_seen(client, configs, MAILBOXES * PER_MAILBOX)
    elapsed = time.perf_counter() - started
    asyncio.run(_publish(settings, "integration.configs", [(c.key, None) for c in configs]))
    commands.confirm(org, MAILBOXES * PER_MAILBOX)  # one command per message: each matches one contact
    return MAILBOXES * PER_MAILBOX / elapsed


def _alternate(baseline: Callable[[], float], measured: Callable[[int], float]) -> tuple[list[float], list[float]]:
    baselines, rates = [], []
    for round_ in range(ROUNDS):
        baselines.append(baseline())
        rates.append(measured(round_))
    return baselines, rates


def _figures(baseline_name: str, measured_name: str, ratio_name: str, baselines: list[float],
             rates: list[float]) -> dict:
    base, rate = statistics.median(baselines), statistics.median(rates)
    return {
        f"{baseline_name}_per_s": round(base, 1),
        f"{measured_name}_per_s": round(rate, 1),
        ratio_name: round(rate / base, 3),
        f"{ratio_name}_rounds": [round(r / b, 3) for b, r in zip(baselines, rates)],
        # the rates of each round too: on a shared machine a ratio's swings come from either side
        f"{baseline_name}_rounds_per_s": [round(b, 1) for b in baselines],
        f"{measured_name}_rounds_per_s": [round(r, 1) for r in rates],
    }


# --- POP3 ------------------------------------------------------------------------------------------------


def _plain_poplib_rate(dovecot: Dovecot, users: list[str]) -> float:
    started = time.perf_counter()
    count = 0
    for user in users:
        client = poplib.POP3(dovecot.host, dovecot.pop3_port)
        client.user(user)
        client.pass_(PASSWORD)
        for line in client.uidl()[1]:
            client.retr(int(line.split()[0]))
            count += 1
        client.quit()
    return count / (time.perf_counter() - started)


def _pop3(settings: Settings, commands: _CommandLog, box: SecretBox) -> dict:
    root = Path(tempfile.mkdtemp(prefix="crmsync-bench-dovecot-"))
    root.chmod(0o755)
    dovecot = Dovecot(root, ensure_certificates(root / "tls")).start()
    try:
        users = [f"bench{n}" for n in range(MAILBOXES)]
        for n, user in enumerate(users):
            dovecot.add_user(user, PASSWORD)
            for i in range(PER_MAILBOX):
                dovecot.deliver(user, _message(n, i))
        mailboxes = [Pop3Mailbox(host=dovecot.host, port=dovecot.pop3_port, security="none", username=user,
                                 password_encrypted=box.encrypt(PASSWORD), poll_interval_s=3600) for user in users]
        # One untimed pass first: Dovecot builds its index and cache files on first reads, which made
        # whichever side read first (the baseline of round 1) look slow and the ratio of round 1 high.
        _plain_poplib_rate(dovecot, users)
        baselines, rates = _alternate(
            lambda: _plain_poplib_rate(dovecot, users),
            lambda round_: _mail_fetch_rate(settings, commands, f"bench-pop3-{round_}", mailboxes))
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)
    return _figures("plain_poplib_retr", "mail_fetch_pop3_to_commands", "pop3_ratio", baselines, rates)


# --- Gmail -----------------------------------------------------------------------------------------------


class _GmailSandbox:
    """Sandbox Gmail accounts of one OAuth client (crmsync's), each holding PER_MAILBOX messages."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.accounts: list[dict] = []

    def populate(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            first = http.post("/_sandbox/accounts", json={"provider": "google", "email": "bench0@gmail.example"})
            self.accounts = [first.raise_for_status().json()]
            for n in range(1, MAILBOXES):
                self.accounts.append(http.post("/_sandbox/accounts", json={
                    "provider": "google", "email": f"bench{n}@gmail.example", "client_id": first.json()["client_id"],
                    "client_secret": first.json()["client_secret"]}).raise_for_status().json())
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._deliver_all, range(MAILBOXES)))

    def _deliver_all(self, n: int) -> None:
        address = self.accounts[n]["email"]
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            for i in range(PER_MAILBOX):
                http.post(f"/_sandbox/gmail/{address}/messages", content=_message(n, i)).raise_for_status()

    def plain_get_rate(self) -> float:
        """messages.list, then messages.get format=raw of every message, one after another."""
        count = 0
        started = time.perf_counter()
        with httpx.Client(base_url=f"{self.base_url}/gmail/v1/users/me", timeout=30) as http:
            for account in self.accounts:
                http.headers["Authorization"] = f"Bearer {account['access_token']}"
                ids, page = [], None
                while True:
                    listed = http.get("/messages", params={"maxResults": 500, **({"pageToken": page} if page else {})})
                    ids += [m["id"] for m in listed.raise_for_status().json().get("messages", [])]
                    if not (page := listed.json().get("nextPageToken")):
                        break
                for message_id in ids:
                    http.get(f"/messages/{message_id}", params={"format": "raw"}).raise_for_status()
                    count += 1
        return count / (time.perf_counter() - started)

    def store_grants(self, settings: Settings, org: str) -> None:
        """What the OAuth connect flow leaves for each user of the org: the refresh token, encrypted."""
        async def put():
            client = connect(settings.redis_url)
            try:
                tokens = TokenStore(client, SecretBox(settings.fernet_key_list))
                for n, account in enumerate(self.accounts):
                    await tokens.put(org, f"u{n}", "mail", Grant("google", account["email"], account["refresh_token"]))
            finally:
                await client.aclose()

        asyncio.run(put())


def _gmail(settings: Settings, commands: _CommandLog, sandbox: _GmailSandbox) -> dict:
    mailboxes = [GmailMailbox(address=a["email"]) for a in sandbox.accounts]

    def measured(round_: int) -> float:
        org = f"bench-gmail-{round_}"
        sandbox.store_grants(settings, org)
        return _mail_fetch_rate(settings, commands, org, mailboxes)

    baselines, rates = _alternate(sandbox.plain_get_rate, measured)
    return _figures("plain_gmail_raw_get", "mail_fetch_gmail_to_commands", "gmail_ratio", baselines, rates)


# --- run ---------------------------------------------------------------------------------------------------


def run() -> dict:
    http_port, https_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{http_port}"
    sandbox_env = {"SANDBOX_HTTP_PORT": str(http_port), "SANDBOX_HTTPS_PORT": str(https_port),
                   "SANDBOX_TLS_DIR": tempfile.mkdtemp(prefix="sandbox-tls-")}
    with service("sandbox", sandbox_env, ready_url=f"{sandbox_url}/_sandbox/counters"):
        gmail = _GmailSandbox(sandbox_url)
        gmail.populate()
        with broker_and_redis() as (bootstrap, redis_url):
            settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, fernet_keys=DEV_FERNET_KEY)
            asyncio.run(ensure_topics(bootstrap, settings.topic_partitions))
            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url, "CRMSYNC_LOG_LEVEL": "WARNING",
                   "CRMSYNC_GOOGLE_API_BASE_URL": sandbox_url, "CRMSYNC_GOOGLE_TOKEN_URL": f"{sandbox_url}/token",
                   "CRMSYNC_GOOGLE_CLIENT_ID": gmail.accounts[0]["client_id"],
                   "CRMSYNC_GOOGLE_CLIENT_SECRET": gmail.accounts[0]["client_secret"]}
            commands = _CommandLog(bootstrap)
            try:
                with service("services.mail_fetch", env):
                    figures = {"messages_per_round": MAILBOXES * PER_MAILBOX, "rounds": ROUNDS,
                               **_pop3(settings, commands, SecretBox(settings.fernet_key_list)),
                               **_gmail(settings, commands, gmail)}
            finally:
                commands.close()
    figures["targets"] = {"pop3_ratio": TARGET_RATIO, "gmail_ratio": TARGET_RATIO}
    return figures


if __name__ == "__main__":
    print(run())
