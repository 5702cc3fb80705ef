"""The reference CRM, run as `python -m sandbox.crm` against the real broker, Redis and ingest.

What a person does over its HTTP API and what crm.commands ask of it both end as records it lists and
as changes on crm.changes, published through ingest; a command's idempotency key is applied once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid

import httpx
import pytest

from sandbox.crm import edits
from sandbox.crm.command_batches import CommandBatches
from sandbox.crm.commands import apply_command, apply_commands
from sandbox.crm.records import Origin, RecordNotFound
from sandbox.crm.store import OUTBOX, OUTBOX_FIELD, CrmStore
from schemas import (
    AttachEmail,
    ChangeSource,
    CrmChange,
    CrmCommand,
    CrmModule,
    CrmOp,
    DeadLetter,
    DeleteRecord,
    InviteUser,
    JoinRequest,
    LinkFile,
    UpsertRecord,
)
from services.common.bus import Bus
from services.common.handling import InboundRecord
from services.common.state import connect
from services.common.topics import CRM_COMMANDS, dlq_name
from tests.fixtures.net import free_port, wait_for
from tests.fixtures.topics import read_topic
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


class Crm:
    """The CRM process and its HTTP API."""

    def __init__(self, service, url: str):
        self.service = service
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def records(self, org: str, module: str) -> list[dict]:
        response = self.http.get(f"/v1/orgs/{org}/modules/{module}/records")
        response.raise_for_status()
        return response.json()["records"]

    def record(self, org: str, module: str, record_id: str, **params) -> dict:
        response = self.http.get(f"/v1/orgs/{org}/modules/{module}/records/{record_id}", params=params)
        response.raise_for_status()
        return response.json()

    def create(self, org: str, module: str, **body) -> dict:
        response = self.http.post(f"/v1/orgs/{org}/modules/{module}/records", json=body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def crm(start_service, ingest) -> Crm:
    port = free_port()
    service = start_service("sandbox.crm", CRMSYNC_CRM_PORT=str(port), CRMSYNC_CRM_INGEST_URL=ingest.url)
    crm = Crm(service, f"http://127.0.0.1:{port}")

    def up_or_exited() -> bool:
        if service.process.poll() is not None:
            return True
        return crm.http.get("/healthz").status_code == 200

    wait_for(up_or_exited, 60, what="the CRM's HTTP API")
    assert service.process.poll() is None, f"the CRM exited:\n{service.log()[-3000:]}"
    yield crm
    crm.http.close()


def changes(kafka_bootstrap: str, org: str) -> list[CrmChange]:
    records = read_topic(kafka_bootstrap, "crm.changes")
    return [c for c in (CrmChange.from_bytes(r.value) for r in records) if c.org_id == org]


def dead_letters(kafka_bootstrap: str, org: str) -> list[DeadLetter]:
    letters = [DeadLetter.from_bytes(r.value) for r in read_topic(kafka_bootstrap, dlq_name(CRM_COMMANDS.name))]
    return [d for d in letters if d.key == org]


def command(org: str, action, idempotency_key: str | None = None) -> CrmCommand:
    return CrmCommand(org_id=org, idempotency_key=idempotency_key or uuid.uuid4().hex, issued_by="test",
                      issued_at=dt.datetime.now(dt.UTC), action=action)


def upsert(owner: str = "user-1", **values) -> UpsertRecord:
    return UpsertRecord(module=values.pop("module", CrmModule.EVENTS), owner_id=owner,
                        fields=values.pop("fields", {"Event_Title": "Demo"}), **values)


def send(settings, *items: CrmCommand | tuple[str, bytes]) -> None:
    """Publish commands (or raw key/value pairs) to crm.commands, in this order, keyed by org."""

    async def publish() -> None:
        bus = Bus(settings)
        await bus.start()
        try:
            for item in items:
                key, value = item if isinstance(item, tuple) else (item.org_id, item.to_bytes())
                await bus.publish_raw(CRM_COMMANDS.name, key.encode(), value)
        finally:
            await bus.stop()

    asyncio.run(publish())


def announced(kafka_bootstrap: str, org: str, correlation_id: str) -> list[CrmChange]:
    """Wait for the changes a command caused; commands of one org are applied in order, so a later
    command's change means every earlier command of that org has been applied (or skipped)."""
    return wait_for(lambda: [c for c in changes(kafka_bootstrap, org) if c.correlation_id == correlation_id],
                    60, what=f"changes with correlation id {correlation_id}")


def test_records_edited_over_http_are_announced_through_ingest_as_a_person_made_them(crm, kafka_bootstrap):
    org = unique_org()
    created = crm.create(org, "Events", owner_id="user-1", fields={"Event_Title": "Demo", "Venue": "Room 1"})
    r = crm.http.patch(f"/v1/orgs/{org}/modules/Events/records/{created['id']}",
                       json={"fields": {"Venue": "Room 2"}})
    assert r.status_code == 200 and r.json()["fields"] == {"Event_Title": "Demo", "Venue": "Room 2"}
    imported = crm.create(org, "Contacts", owner_id="user-2", fields={"Email": "a@example.com"}, source="import")
    assert crm.http.delete(f"/v1/orgs/{org}/modules/Events/records/{created['id']}").status_code == 204

    seen = wait_for(lambda: len(changes(kafka_bootstrap, org)) == 4 and changes(kafka_bootstrap, org), 60,
                    what="four changes")
    event_changes = [c for c in seen if c.record_id == created["id"]]
    assert [c.op for c in event_changes] == [CrmOp.CREATED, CrmOp.UPDATED, CrmOp.DELETED]
    assert all(c.source == ChangeSource.UI and c.correlation_id is None for c in event_changes)
    assert event_changes[1].fields == {"Event_Title": "Demo", "Venue": "Room 2"}
    [contact] = [c for c in seen if c.record_id == imported["id"]]
    assert (contact.module, contact.source, contact.owner_id) == (CrmModule.CONTACTS, ChangeSource.IMPORT, "user-2")
    assert crm.records(org, "Events") == []
    assert [r["id"] for r in crm.records(org, "Contacts")] == [imported["id"]]


def test_a_command_creates_a_record_listed_and_announced_with_its_correlation_id(crm, settings, kafka_bootstrap):
    org = unique_org()
    cmd = command(org, upsert(fields={"Event_Title": "From Google"}, external_ref="google:evt-1"))
    send(settings, cmd)
    [change] = announced(kafka_bootstrap, org, cmd.correlation_id)
    assert (change.op, change.source, change.module) == (CrmOp.CREATED, ChangeSource.INTEGRATION, CrmModule.EVENTS)
    [listed] = crm.records(org, "Events")
    assert listed["id"] == change.record_id
    assert listed["fields"] == change.fields == {"Event_Title": "From Google"}
    assert listed["external_ref"] == "google:evt-1"


def test_the_same_idempotency_key_twice_leaves_one_record_and_one_change(crm, settings, kafka_bootstrap):
    org = unique_org()
    first = command(org, upsert(), idempotency_key="google_calendar:evt-1:v1")
    later = command(org, upsert(fields={"Event_Title": "Later"}))
    send(settings, first, first, later)
    announced(kafka_bootstrap, org, later.correlation_id)
    assert len([c for c in changes(kafka_bootstrap, org) if c.correlation_id == first.correlation_id]) == 1
    assert len(crm.records(org, "Events")) == 2


def test_an_applied_key_is_remembered_across_a_restart(crm, settings, kafka_bootstrap, start_service, ingest):
    org = unique_org()
    once = command(org, upsert())
    send(settings, once)
    announced(kafka_bootstrap, org, once.correlation_id)
    crm.service.stop()
    restarted_port = free_port()
    start_service("sandbox.crm", CRMSYNC_CRM_PORT=str(restarted_port), CRMSYNC_CRM_INGEST_URL=ingest.url)
    later = command(org, upsert(fields={"Event_Title": "After the restart"}))
    send(settings, once, later)
    announced(kafka_bootstrap, org, later.correlation_id)
    assert len([c for c in changes(kafka_bootstrap, org) if c.correlation_id == once.correlation_id]) == 1


def test_changes_wait_in_the_outbox_while_ingest_is_unreachable_and_go_out_after(
    start_service, ingest, kafka_bootstrap
):
    org = unique_org()
    port = free_port()
    cut_off = start_service("sandbox.crm", CRMSYNC_CRM_PORT=str(port),
                            CRMSYNC_CRM_INGEST_URL=f"http://127.0.0.1:{free_port()}")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_for(lambda: http.get("/healthz").status_code == 200, 60, what="the cut-off CRM")
        r = http.post(f"/v1/orgs/{org}/modules/Deals/records", json={"owner_id": "user-1", "fields": {"Stage": "New"}})
    assert r.status_code == 201
    wait_for(lambda: "cannot publish CRM changes yet" in cut_off.log(), 30, what="a failed delivery")
    assert changes(kafka_bootstrap, org) == []
    cut_off.stop()

    start_service("sandbox.crm", CRMSYNC_CRM_PORT=str(port), CRMSYNC_CRM_INGEST_URL=ingest.url)
    [change] = wait_for(lambda: changes(kafka_bootstrap, org), 60, what="the change kept in the outbox")
    assert change.record_id == r.json()["id"] and change.fields == {"Stage": "New"}


def test_an_upsert_with_a_known_external_ref_updates_that_record_instead_of_duplicating(
    crm, settings, kafka_bootstrap
):
    org = unique_org()
    created = command(org, upsert(fields={"Event_Title": "v1", "Venue": "Room 1"}, external_ref="google:evt-9"))
    reenabled = command(org, upsert(fields={"Event_Title": "v2"}, external_ref="google:evt-9"))
    send(settings, created, reenabled)
    [update] = announced(kafka_bootstrap, org, reenabled.correlation_id)
    [first] = [c for c in changes(kafka_bootstrap, org) if c.correlation_id == created.correlation_id]
    assert (first.op, update.op) == (CrmOp.CREATED, CrmOp.UPDATED)
    assert update.record_id == first.record_id
    [record] = crm.records(org, "Events")
    assert record["fields"] == {"Event_Title": "v2", "Venue": "Room 1"}


def test_mail_attaches_once_per_message_and_files_link_into_the_related_list(crm, settings, kafka_bootstrap):
    org = unique_org()
    lead = crm.create(org, "Leads", owner_id="user-1", fields={"Email": "buyer@example.com"})
    mail = {"module": CrmModule.LEADS, "record_id": lead["id"], "thread_id": "t-1", "subject": "Quote",
            "from_address": "buyer@example.com", "owner_id": "user-1", "mailbox": "user-1@example.com"}
    private = AttachEmail(message_id="<m1@example.com>", visibility="private", **mail)
    shared = AttachEmail(message_id="<m2@example.com>", visibility="shared", **mail)
    file = LinkFile(module=CrmModule.LEADS, record_id=lead["id"], file_id="drive-f1", name="quote.pdf",
                    mime_type="application/pdf", size=1234)
    link = command(org, file)
    send(settings, command(org, private), command(org, private), command(org, shared), link, command(org, file))
    [attachment] = announced(kafka_bootstrap, org, link.correlation_id)

    assert (attachment.module, attachment.op) == (CrmModule.ATTACHMENTS, CrmOp.CREATED)
    assert attachment.fields["Parent_Id"] == lead["id"] and attachment.fields["File_Name"] == "quote.pdf"
    seen = crm.record(org, "Leads", lead["id"])
    assert [e["message_id"] for e in seen["emails"]] == ["<m1@example.com>", "<m2@example.com>"]
    assert [f["id"] for f in seen["files"]] == [attachment.record_id]
    someone_else = crm.record(org, "Leads", lead["id"], viewer="user-2")
    assert [e["message_id"] for e in someone_else["emails"]] == ["<m2@example.com>"]
    assert len(changes(kafka_bootstrap, org)) == 2, "the lead's creation and the attachment, nothing for mail"


def test_invited_users_and_approved_join_requests_become_users(crm, settings, kafka_bootstrap):
    org = unique_org()
    invite = command(org, InviteUser(email="ann@example.com", display_name="Ann", directory_user_id="aad-1",
                                     invited_by="admin-1"))
    ask = command(org, JoinRequest(email="bob@example.com", display_name="Bob", directory_user_id="aad-2"))
    send(settings, ask, invite)
    [invited] = announced(kafka_bootstrap, org, invite.correlation_id)
    assert invited.module == CrmModule.USERS and invited.fields["Status"] == "invited"
    [pending] = crm.http.get(f"/v1/orgs/{org}/join-requests").json()["join_requests"]
    assert (pending["email"], pending["status"]) == ("bob@example.com", "pending")

    r = crm.http.post(f"/v1/orgs/{org}/join-requests/aad-2/approve", json={"approved_by": "admin-1"})
    assert r.status_code == 201, r.text
    approved = wait_for(lambda: [c for c in changes(kafka_bootstrap, org) if c.record_id == r.json()["id"]], 60,
                        what="the approved user's change")
    assert approved[0].fields["Status"] == "active" and approved[0].source == ChangeSource.UI
    assert crm.http.get(f"/v1/orgs/{org}/join-requests").json()["join_requests"] == []
    assert sorted(u["fields"]["Email"] for u in crm.records(org, "Users")) == ["ann@example.com", "bob@example.com"]


def test_bulk_updated_records_are_announced_as_bulk_updates(crm, kafka_bootstrap):
    org = unique_org()
    r = crm.http.post(f"/v1/orgs/{org}/modules/Events/records/bulk",
                      json={"records": [{"owner_id": "user-1", "fields": {"Event_Title": f"E{i}"}} for i in range(3)]})
    assert r.status_code == 201, r.text
    ids = [record["id"] for record in r.json()["records"]]
    r = crm.http.post(f"/v1/orgs/{org}/modules/Events/bulk-update",
                      json={"record_ids": ids[:2], "fields": {"Venue": "Online"}})
    assert r.status_code == 200, r.text
    seen = wait_for(lambda: len(changes(kafka_bootstrap, org)) == 5 and changes(kafka_bootstrap, org), 60,
                    what="three imports and two bulk updates")
    assert [c.source for c in seen if c.op == CrmOp.CREATED] == [ChangeSource.IMPORT] * 3
    updates = [c for c in seen if c.op == CrmOp.UPDATED]
    assert sorted(c.record_id for c in updates) == sorted(ids[:2])
    assert all(c.source == ChangeSource.BULK_UPDATE and c.fields["Venue"] == "Online" for c in updates)


def test_an_invalid_command_is_dead_lettered_with_the_reason_and_the_crm_goes_on(crm, settings, kafka_bootstrap):
    org = unique_org()
    missing = command(org, upsert(record_id="no-such-record"))
    fine = command(org, upsert())
    send(settings, (org, b"{not json"), (org, b'{"org_id": "x"}'), missing, fine)
    announced(kafka_bootstrap, org, fine.correlation_id)
    letters = wait_for(lambda: len(dead_letters(kafka_bootstrap, org)) == 3 and dead_letters(kafka_bootstrap, org),
                       30, what="three dead letters")
    poison, incomplete, not_found = letters
    assert poison.reason.startswith("invalid CrmCommand") and poison.worker == "crm"
    assert "idempotency_key: Field required" in incomplete.reason
    assert not_found.reason == f"upsert_record: no Events record 'no-such-record' in org '{org}'"
    assert crm.service.process.poll() is None


BAD_INPUT = [  # method, path under the org, body, status, what the problem's detail names
    ("post", "/modules/Events/records", {"fields": {}}, 422, "owner_id"),
    ("post", "/modules/Events/records", {"owner_id": "u", "fields": [], "source": "ui"}, 422, "fields"),
    ("post", "/modules/Events/records", {"owner_id": "u", "fields": {}, "source": "integration"}, 422, "source"),
    ("post", "/modules/Events/records", {"owner_id": "u:1", "fields": {}}, 422, "owner_id"),
    ("post", "/modules/Widgets/records", {"owner_id": "u", "fields": {}}, 422, "module"),
    ("post", "/modules/Users/records", {"owner_id": "u", "fields": {}}, 422, "module"),
    ("patch", "/modules/Events/records/nope", {"fields": {"a": 1}}, 404, "nope"),
    ("post", "/modules/Events/bulk-update", {"record_ids": [], "fields": {}}, 422, "record_ids"),
    ("post", "/join-requests/aad-9/approve", {"approved_by": "admin-1"}, 404, "aad-9"),
]


def test_bad_http_input_is_a_problem_naming_what_is_wrong_and_changes_nothing(crm, kafka_bootstrap):
    org = unique_org()
    for method, path, body, status, named in BAD_INPUT:
        r = crm.http.request(method.upper(), f"/v1/orgs/{org}{path}", json=body)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert named in r.json()["detail"], (path, r.json())
    assert crm.records(org, "Events") == []


# --- the store alone, on the session's Redis: what the commit script must get right ----------------


def store_on(redis_url: str) -> CrmStore:
    return CrmStore(connect(redis_url), applied_ttl_s=600)


def test_concurrent_edits_of_one_record_lose_none_of_them(redis_url):
    org, origin = unique_org(), Origin(ChangeSource.UI)

    async def scenario() -> dict:
        store = store_on(redis_url)

        async def create(txn):
            return edits.put(txn, None, CrmModule.DEALS, "user-1", {}, None, origin)

        async def set_field(record_id: str, n: int):
            async def work(txn):
                current = await edits.existing(txn, CrmModule.DEALS, record_id)
                return edits.put(txn, current, CrmModule.DEALS, None, {f"F{n}": n}, None, origin)

            await store.transaction(org, work)

        record = await store.transaction(org, create)
        await asyncio.gather(*(set_field(record.id, n) for n in range(20)))
        fields = (await store.record(org, CrmModule.DEALS, record.id)).fields
        await store.redis.aclose()
        return fields

    assert asyncio.run(scenario()) == {f"F{n}": n for n in range(20)}


def test_values_survive_the_commit_script_as_they_were_sent(redis_url):
    org = unique_org()
    fields = {"Subject": "Café ☕ 🎉 \"quoted\" \\ back", "Participants": [], "Reminders": [{"minutes": 10}],
              "Empty": {}, "Nothing": None, "Big": 2**53 + 1, "Ratio": 0.1}

    async def scenario():
        store = store_on(redis_url)

        async def create(txn):
            return edits.put(txn, None, CrmModule.EVENTS, "user-1", fields, "g:é/1", Origin(ChangeSource.UI))

        record = await store.transaction(org, create)
        stored = await store.record(org, CrmModule.EVENTS, record.id)
        await store.redis.aclose()
        return stored

    stored = asyncio.run(scenario())
    assert stored.fields == fields and stored.external_ref == "g:é/1"


def test_a_batch_of_commands_applies_each_in_order_as_one_at_a_time_would(redis_url):
    """Later commands of a batch see what earlier ones wrote (uncommitted yet), a key repeated within the
    batch or applied before is skipped, and a command on a missing record fails alone."""
    org = unique_org()
    before = command(org, upsert(external_ref="g:before", fields={"Event_Title": "old"}), "key-before")
    batch = [
        command(org, upsert(external_ref="g:1", fields={"Event_Title": "created"}), "key-1"),
        command(org, upsert(external_ref="g:1", fields={"Location": "Room 2"}), "key-2"),
        command(org, upsert(external_ref="g:1", fields={"Event_Title": "repeat"}), "key-1"),
        command(org, upsert(external_ref="g:before", fields={"Event_Title": "again"}), "key-before"),
        command(org, upsert(external_ref="g:before", fields={"Event_Title": "new"}), "key-3"),
        command(org, UpsertRecord(module=CrmModule.EVENTS, record_id="gone", owner_id="user-1",
                                  fields={"Event_Title": "x"}), "key-4"),
        command(org, DeleteRecord(module=CrmModule.EVENTS, record_id="gone"), "key-5"),
    ]

    async def scenario():
        store = store_on(redis_url)
        await apply_command(store, before)
        outcomes = await apply_commands(store, batch)
        again = await apply_commands(store, batch[:2])
        records = await store.records(org, CrmModule.EVENTS, 0, 10)
        announced = await store.redis.xrange(OUTBOX)
        await store.redis.aclose()
        return outcomes, again, records, [json.loads(e[OUTBOX_FIELD]) for _, e in announced]

    outcomes, again, records, outbox = asyncio.run(scenario())
    assert outcomes[:5] == [True, True, False, False, True] and outcomes[6] is True
    assert isinstance(outcomes[5], RecordNotFound)
    assert again == [False, False]
    by_ref = {r.external_ref: r.fields for r in records}
    assert by_ref == {"g:1": {"Event_Title": "created", "Location": "Room 2"}, "g:before": {"Event_Title": "new"}}
    ours = [(c["op"], c["fields"].get("Event_Title")) for c in outbox if c["org_id"] == org]
    assert ours == [("created", "old"), ("created", "created"), ("updated", "created"), ("updated", "new")]


def test_a_batch_whose_reads_change_before_its_commit_runs_again_and_loses_nothing(redis_url):
    """A person's edit between the batch's reads and its commit: the batch reads again, both edits stay."""
    org, origin = unique_org(), Origin(ChangeSource.UI)

    async def scenario():
        store = store_on(redis_url)
        record = await store.transaction(org, lambda txn: _edit(txn, None, {"A": 1}, origin))
        attempts = 0

        async def batch_edit(txn):
            nonlocal attempts
            attempts += 1
            current = await edits.existing(txn, CrmModule.EVENTS, record.id)
            if attempts == 1:  # someone else's edit lands after this read
                await store.transaction(org, lambda other: _edit(other, record.id, {"B": 2}, origin))
            return edits.put(txn, current, CrmModule.EVENTS, None, {"C": 3}, None, origin)

        outcomes = await store.transaction_batch(org, [batch_edit], _nothing_ahead)
        fields = (await store.record(org, CrmModule.EVENTS, record.id)).fields
        await store.redis.aclose()
        return outcomes, attempts, fields

    outcomes, attempts, fields = asyncio.run(scenario())
    assert not isinstance(outcomes[0], Exception) and attempts == 2
    assert fields == {"A": 1, "B": 2, "C": 3}


def test_a_lone_command_is_applied_at_once_and_a_burst_gathers_between_batches(redis_url):
    """After a batch of several commands (a burst under way) the next batch waits `linger_s` and takes
    all that came meanwhile; a command after a quiet spell does not wait."""
    org, linger_s = unique_org(), 0.4

    async def scenario():
        store = store_on(redis_url)
        acked: dict[int, float] = {}

        async def acknowledge(offset: int) -> None:
            acked[offset] = time.monotonic()

        async def not_expected(record: InboundRecord) -> None:
            raise AssertionError(f"command {record.offset} was not applied in its batch")

        batches = CommandBatches(store, not_expected, acknowledge, linger_s=linger_s)

        async def submit(*offsets: int) -> None:
            for n in offsets:
                value = command(org, upsert(external_ref=f"g:{n}"), f"key-{n}").to_bytes()
                await batches.submit(InboundRecord("crm.commands", 0, n, org.encode(), value), n)

        async def acknowledged(n: int) -> float:
            while n not in acked:
                await asyncio.sleep(0.005)
            return acked[n]

        started = time.monotonic()
        await submit(0)
        lone = await acknowledged(0) - started
        await submit(1, 2, 3)  # queued together: one batch of three, then the linger
        burst_end = await acknowledged(3)
        await submit(4, 5)
        after_linger = [await acknowledged(4) - burst_end, await acknowledged(5) - burst_end]
        batches.cancel()
        records = await store.records(org, CrmModule.EVENTS, 0, 10)
        await store.redis.aclose()
        return lone, after_linger, len(records)

    lone, after_linger, records = asyncio.run(scenario())
    assert lone < linger_s / 2
    assert all(wait >= linger_s * 0.9 for wait in after_linger)
    assert records == 6


async def _nothing_ahead() -> dict:
    return {}


async def _edit(txn, record_id: str | None, fields: dict, origin: Origin):
    current = await edits.existing(txn, CrmModule.EVENTS, record_id) if record_id else None
    return edits.put(txn, current, CrmModule.EVENTS, "user-1", fields, None, origin)
