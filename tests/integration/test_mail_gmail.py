"""Gmail against the sandbox: first sync, push -> history, 404 -> full sync without duplicates,
a revoked grant shown as auth_failed."""
import asyncio

import httpx
import pytest

from schemas import CrmModule
from services.common.secrets import SecretBox
from services.common.state import connect
from services.common.tokens import Grant, TokenStore
from tests.fixtures.net import wait_for
from tests.integration.test_mail_support import MailWorld, mail, users_on_every_partition, wait_assigned

pytestmark = pytest.mark.integration


def store_grant(settings, org: str, user: str, account: dict) -> None:
    """What the OAuth consent flow leaves behind: the user's refresh token, encrypted in Redis."""
    async def put():
        redis = connect(settings.redis_url)
        try:
            await TokenStore(redis, SecretBox(settings.fernet_key_list)).put(
                org, user, "mail", Grant("google", account["email"], account["refresh_token"]))
        finally:
            await redis.aclose()

    asyncio.run(put())


def test_gmail_first_sync_push_history_and_expired_history(settings, ingest, kafka_bootstrap, sandbox, start_service):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    address = f"{world.org}@gmail.example.com"
    account = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={"provider": "google", "email": address}).json()
    httpx.post(f"{sandbox.http_url}/_sandbox/pubsub/subscriptions", json={
        "topic": "projects/crmsync/topics/gmail",
        "push_endpoint": f"{ingest.url}/v1/webhooks/gmail?token={settings.gmail_push_token}"}).raise_for_status()

    def deliver(raw: bytes) -> dict:
        r = httpx.post(f"{sandbox.http_url}/_sandbox/gmail/{address}/messages", content=raw)
        r.raise_for_status()
        return r.json()

    root = deliver(mail("carl@contact.example", address, "Gmail one", message_id="<g1@c>"))
    deliver(mail(address, "carl@contact.example", "Re: Gmail one", message_id="<g2@me>", in_reply_to="<g1@c>",
                 references="<g1@c>"))
    deliver(mail("stranger@x.example", address, "Not for the CRM"))
    store_grant(settings, world.org, "gm1", account)
    worker = start_service("services.mail_fetch", CRMSYNC_GOOGLE_API_BASE_URL=sandbox.http_url,
                           CRMSYNC_GOOGLE_TOKEN_URL=f"{sandbox.http_url}/token",
                           CRMSYNC_GOOGLE_CLIENT_ID=account["client_id"],
                           CRMSYNC_GOOGLE_CLIENT_SECRET=account["client_secret"])
    world.wait_indexed("carl@contact.example", "C1")
    world.configure("gm1", {"kind": "gmail", "address": address})
    commands = world.wait_commands(2, worker=worker)
    assert [c.action.subject for c in commands] == ["Gmail one", "Re: Gmail one"]
    assert {c.action.thread_id for c in commands} == {root["threadId"]}
    assert commands[0].action.mailbox == address

    # Later mail arrives by push (Pub/Sub -> ingest -> provider.notifications) and history.list.
    deliver(mail("carl@contact.example", address, "Pushed"))
    world.wait_commands(3, worker=worker)

    # History too old: 404, a full sync, and only the new message goes out.
    httpx.post(f"{sandbox.http_url}/_sandbox/gmail/{address}/expire-history").raise_for_status()
    deliver(mail("carl@contact.example", address, "After expiry"))
    commands = world.wait_commands(4, worker=worker)
    assert [c.action.subject for c in commands] == ["Gmail one", "Re: Gmail one", "Pushed", "After expiry"]
    assert len({c.idempotency_key for c in commands}) == 4

    # The user revokes access (or changes the password): invalid_grant -> auth_failed with the reason.
    httpx.post(f"{sandbox.http_url}/_sandbox/accounts/{account['id']}/revoke").raise_for_status()
    deliver(mail("carl@contact.example", address, "After revocation"))
    wait_for(lambda: (world.status("gm1") or {}).get("state") == "auth_failed", 60, what="auth_failed")
    assert "invalid_grant" in world.status("gm1")["reason"]


def gmail_accounts(sandbox, world: MailWorld, users: list[str]) -> list[dict]:
    """Sandbox Gmail accounts of one OAuth client (crmsync's), each with the grant the connect flow leaves."""
    accounts: list[dict] = []
    for user in users:
        client = {"client_id": accounts[0]["client_id"], "client_secret": accounts[0]["client_secret"]} if accounts else {}
        accounts.append(httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={
            "provider": "google", "email": f"{world.org}-{user}@gmail.example.com", **client}).raise_for_status().json())
        store_grant(world.settings, world.org, user, accounts[-1])
    return accounts


def gmail_worker(start_service, sandbox, account: dict):
    return start_service("services.mail_fetch", CRMSYNC_GOOGLE_API_BASE_URL=sandbox.http_url,
                         CRMSYNC_GOOGLE_TOKEN_URL=f"{sandbox.http_url}/token",
                         CRMSYNC_GOOGLE_CLIENT_ID=account["client_id"],
                         CRMSYNC_GOOGLE_CLIENT_SECRET=account["client_secret"])


def deliver_gmail(sandbox, address: str, raw: bytes) -> None:
    httpx.post(f"{sandbox.http_url}/_sandbox/gmail/{address}/messages", content=raw).raise_for_status()


def watch_of(sandbox, address: str) -> dict | None:
    return httpx.get(f"{sandbox.http_url}/_sandbox/gmail/{address}").raise_for_status().json()["watch"]


def test_a_disabled_or_removed_gmail_mailbox_has_its_watch_stopped(settings, ingest, kafka_bootstrap, sandbox,
                                                                   start_service):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    [account] = gmail_accounts(sandbox, world, ["gm0"])
    address = account["email"]
    deliver_gmail(sandbox, address, mail("carl@contact.example", address, "Before"))
    worker = gmail_worker(start_service, sandbox, account)
    world.wait_indexed("carl@contact.example", "C1")
    world.configure("gm0", {"kind": "gmail", "address": address})
    world.wait_commands(1, worker=worker)
    assert watch_of(sandbox, address)["topic"] == "projects/crmsync/topics/gmail"

    world.configure("gm0", {"kind": "gmail", "address": address}, enabled=False)
    wait_for(lambda: watch_of(sandbox, address) is None, 30, what="users.stop on disabling")
    world.configure("gm0", {"kind": "gmail", "address": address})
    wait_for(lambda: watch_of(sandbox, address), 30, what="the watch opened again on re-enabling")
    world.remove("gm0")
    wait_for(lambda: watch_of(sandbox, address) is None, 30, what="users.stop on removal")
    assert len(world.commands()) == 1
    # The grant went with the configuration, and so did the token the watch record kept to stop it.
    client = world.redis()
    assert not client.exists(f"crmsync:grant:{world.org}:gm0:mail")
    assert not list(client.scan_iter(match=f"crmsync:mailwatch:{world.org}:*"))


def new_account(sandbox, like: dict, address: str) -> dict:
    """Another sandbox Gmail account of the same OAuth client (crmsync's)."""
    return httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={
        "provider": "google", "email": address, "client_id": like["client_id"],
        "client_secret": like["client_secret"]}).raise_for_status().json()


def test_a_changed_gmail_address_stops_the_old_watch_and_fetches_each_message_once(
        settings, ingest, kafka_bootstrap, sandbox, start_service):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    [old] = gmail_accounts(sandbox, world, ["ga0"])
    new = new_account(sandbox, old, f"{world.org}-new@gmail.example.com")
    deliver_gmail(sandbox, old["email"], mail("carl@contact.example", old["email"], "old-1"))
    worker = gmail_worker(start_service, sandbox, old)
    world.wait_indexed("carl@contact.example", "C1")
    world.configure("ga0", {"kind": "gmail", "address": old["email"]})
    world.wait_commands(1, worker=worker)
    assert watch_of(sandbox, old["email"])

    # The address changes before the new account is connected: the old watch is stopped, and the old
    # account's grant is not used to fetch under the new address.
    world.configure("ga0", {"kind": "gmail", "address": new["email"]})
    wait_for(lambda: watch_of(sandbox, old["email"]) is None, 30, what="users.stop of the old mailbox")
    wait_for(lambda: (world.status("ga0") or {}).get("state") == "auth_failed", 30, what="auth_failed")
    assert old["email"] in world.status("ga0")["reason"] and new["email"] in world.status("ga0")["reason"]
    registry = world.redis()
    assert not registry.exists(f"crmsync:mailbox:gmail:{old['email'].lower()}"), "pushes for it are refused"
    assert registry.exists(f"crmsync:mailbox:gmail:{new['email'].lower()}")

    # Connected: the new mailbox is fetched and watched; mail reaching the old one is not fetched.
    deliver_gmail(sandbox, old["email"], mail("carl@contact.example", old["email"], "old-2"))
    deliver_gmail(sandbox, new["email"], mail("carl@contact.example", new["email"], "new-1"))
    store_grant(settings, world.org, "ga0", new)
    world.configure("ga0", {"kind": "gmail", "address": new["email"]})
    commands = world.wait_commands(2, worker=worker)
    assert [c.action.subject for c in commands] == ["old-1", "new-1"]
    assert [c.action.mailbox for c in commands] == [old["email"], new["email"]]
    assert watch_of(sandbox, new["email"]) and watch_of(sandbox, old["email"]) is None

    # Back to the old address: only what it got meanwhile arrives; nothing is fetched twice.
    store_grant(settings, world.org, "ga0", old)
    world.configure("ga0", {"kind": "gmail", "address": old["email"]})
    commands = world.wait_commands(3, worker=worker)
    wait_for(lambda: watch_of(sandbox, new["email"]) is None, 30, what="users.stop of the replaced mailbox")
    assert [c.action.subject for c in world.commands()] == ["old-1", "new-1", "old-2"]


def test_gmail_calls_draw_on_the_users_bucket_and_throttling_is_retried(
        settings, ingest, kafka_bootstrap, sandbox, start_service):
    """429, 403 rateLimitExceeded and 503 answers (with Retry-After) on every Gmail route: each message
    still arrives once, and the calls were counted against the user's shared Gmail bucket."""
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    [account] = gmail_accounts(sandbox, world, ["gq0"])
    for i in range(30):
        deliver_gmail(sandbox, account["email"], mail("carl@contact.example", account["email"], f"q{i}"))
    control = f"{sandbox.http_url}/_sandbox"
    before = httpx.get(f"{control}/counters").json()["injected"]
    rules = [{"route": "/gmail/v1/users/{user_id}/messages/{message_id}", "rate_429": 0.2,
              "google_403_rate_limit": True, "retry_after_s": 1, "seed": 7},
             {"route": "/gmail/v1/*", "rate_429": 0.1, "rate_5xx": 0.1, "retry_after_s": 1, "seed": 8}]
    for rule in rules:
        httpx.post(f"{control}/faults", json=rule).raise_for_status()
    # The user's bucket is drained (as other workers' calls would leave it): no call goes out until
    # it refills, and a wait past the deadline is reported, not sat out.
    client, bucket = world.redis(), f"crmsync:ratelimit:gmail:{world.org}:gq0"
    seconds, micros = client.time()
    client.hset(bucket, mapping={"tokens": "-6000", "ts": str(seconds + micros / 1e6)})
    try:
        worker = gmail_worker(start_service, sandbox, account)
        world.wait_indexed("carl@contact.example", "C1")
        world.configure("gq0", {"kind": "gmail", "address": account["email"]})
        wait_for(lambda: (world.status("gq0") or {}).get("state") == "unreachable", 60, what="throttled by the bucket")
        assert bucket in world.status("gq0")["reason"]
        assert not world.commands()
        client.delete(bucket)  # refilled
        commands = world.wait_commands(30, timeout_s=120, worker=worker)
    finally:
        httpx.delete(f"{control}/faults").raise_for_status()
    assert sorted(c.action.subject for c in commands) == sorted(f"q{i}" for i in range(30))
    injected = httpx.get(f"{control}/counters").json()["injected"]
    gained = {name: count - before.get(name, 0) for name, count in injected.items()
              if name.startswith("GET /gmail/v1/") and count > before.get(name, 0)}
    assert any(name.endswith("429") for name in gained) and any(name.endswith("503") for name in gained), gained
    wait_for(lambda: world.status("gq0")["state"] == "ok", 30, what="status ok")


def test_two_workers_fetch_each_gmail_message_once(settings, ingest, kafka_bootstrap, sandbox, start_service):
    world = MailWorld(settings, ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    users = users_on_every_partition(world.org, settings.topic_partitions, prefix="gm")
    accounts = gmail_accounts(sandbox, world, users)
    httpx.post(f"{sandbox.http_url}/_sandbox/pubsub/subscriptions", json={
        "topic": "projects/crmsync/topics/gmail",
        "push_endpoint": f"{ingest.url}/v1/webhooks/gmail?token={settings.gmail_push_token}"}).raise_for_status()
    for n, account in enumerate(accounts):
        for i in range(5):
            deliver_gmail(sandbox, account["email"], mail("carl@contact.example", account["email"], f"m{n}-{i}"))
    first = gmail_worker(start_service, sandbox, accounts[0])
    second = gmail_worker(start_service, sandbox, accounts[0])
    world.wait_indexed("carl@contact.example", "C1")
    wait_assigned(first, second)
    for user, account in zip(users, accounts):
        world.configure(user, {"kind": "gmail", "address": account["email"]})
    world.wait_commands(5 * len(users), worker=first)
    for n, account in enumerate(accounts):  # later mail comes by push, to whichever worker owns the mailbox
        deliver_gmail(sandbox, account["email"], mail("carl@contact.example", account["email"], f"late-{n}"))
    commands = world.wait_commands(6 * len(users), worker=second)
    subjects = [c.action.subject for c in commands]
    assert len(subjects) == len(set(subjects)) == 6 * len(users)
    assert "mail fetched" in first.log() and "mail fetched" in second.log(), "both workers own mailboxes"
