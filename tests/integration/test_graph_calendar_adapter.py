"""GraphCalendarProvider against the sandbox (identity over TLS with the test CA, Graph over http) and the
real Redis for the mailbox's quota bucket."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import httpx
import pytest

from services.calendar_sync.model import Attendee, CanonicalEvent, EventTime
from services.calendar_sync.ports import AuthFailed, ChangedMeanwhile, CursorExpired, WriteResult
from services.common.ratelimit import RateLimited
from services.common.settings import Settings
from services.common.state import connect
from services.common.tokens import Grant
from services.providers.microsoft import calendar_ids as ids
from services.providers.microsoft.connections import GraphConnections
from tests.fixtures.net import wait_for
from tests.sandbox.microsoft_support import Receiver, calls, event_body, graph, new_user

pytestmark = pytest.mark.integration

ORG, USER = "org1", "user1"
TOKEN = "/oauth2/v2.0/token"
BATCH = "POST /v1.0/$batch"
LIST_EVENTS = "GET /v1.0/users/{user_id}/events"
CREATE_EVENT = "POST /v1.0/users/{user_id}/events"
READ_EVENT = "GET /v1.0/users/{user_id}/events/{event_id}"


# --- arranging -------------------------------------------------------------------------------------
def settings_for(sandbox, user: dict, **overrides) -> Settings:
    return Settings(
        env="test",
        microsoft_authority_base_url=sandbox.https_url,
        microsoft_graph_base_url=sandbox.http_url,
        microsoft_client_id=user["client_id"],
        microsoft_client_secret=user["client_secret"],
        provider_ca_bundle=str(sandbox.tls.ca_cert),
        retry_max_attempts=12, retry_base_delay_s=0.01, retry_max_delay_s=0.1,
        **overrides,
    )


def delegated(user: dict) -> Grant:
    return Grant("microsoft", user["email"], user["refresh_token"], tenant_id=user["tenant_id"])


def control(sandbox, method: str, path: str, **kwargs) -> httpx.Response:
    answer = httpx.request(method, f"{sandbox.http_url}/_sandbox{path}", **kwargs)
    answer.raise_for_status()
    return answer


def counted(sandbox, route: str) -> int:
    """Calls the sandbox counted on exactly this route ("METHOD template")."""
    return control(sandbox, "GET", "/counters").json()["calls"].get(route, 0)


def at(days: float, hour: int = 10) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + dt.timedelta(days=days, hours=hour)


def meeting(title: str, days: float = 1, hour: int = 10, **fields) -> CanonicalEvent:
    start = at(days, hour)
    return CanonicalEvent(title=title, start=EventTime(date_time=start, time_zone="UTC"),
                          end=EventTime(date_time=start + dt.timedelta(hours=1), time_zone="UTC"), **fields)


class Outlook:
    """The user's mailbox as the user (or a test) sees it through Graph, outside crmsync."""

    def __init__(self, sandbox, user: dict):
        self.api = graph(sandbox, user["access_token"])
        self.events_url = f"/users/{user['id']}/events"

    def add(self, title: str, days: float = 1, **extra) -> dict:
        """An event the user made in Outlook."""
        start, end = (at(days, hour).strftime("%Y-%m-%dT%H:%M:%S") for hour in (10, 11))
        answer = self.api.post(self.events_url, json=event_body(title, start, end, **extra))
        assert answer.status_code == 201, answer.text
        return answer.json()

    def events(self) -> list[dict]:
        """Every event in the calendar, with our properties."""
        answer = self.api.get(self.events_url, params={"$top": "1000", "$expand": ids.EXPAND_OURS})
        assert answer.status_code == 200, answer.text
        return answer.json()["value"]

    def default_calendar_id(self) -> str:
        return self.api.get(self.events_url.removesuffix("/events") + "/calendar").json()["id"]


def record_ids(events: list[dict]) -> list[str]:
    return sorted(ids.properties_of(e).get(ids.RECORD_PROPERTY, "") for e in events)


async def drain(provider, cursor=None, window_days=30, page_cap=500):
    """Every page of one delta round: (pages of events, final cursor)."""
    pages, token = [], None
    while True:
        page = await provider.list_changes(cursor, window_days, page_cap, token)
        pages.append(page.events)
        if page.final_cursor is not None:
            return pages, page.final_cursor
        assert page.next_cursor is not None
        token = page.next_cursor


@pytest.fixture
def user(sandbox) -> dict:
    """A mailbox of its own per test: quota buckets are per mailbox and live on in Redis."""
    return new_user(sandbox, f"ann-{uuid.uuid4().hex[:8]}@contoso.test")


@pytest.fixture
def outlook(sandbox, user) -> Outlook:
    return Outlook(sandbox, user)


@pytest.fixture
async def connections(sandbox, user, redis_url):
    """What a worker process holds; the real Redis carries the mailbox's quota bucket."""
    redis = connect(redis_url)
    opened = GraphConnections(settings_for(sandbox, user), redis)
    yield opened
    await opened.aclose()
    await redis.aclose()


@pytest.fixture
def provider(connections, user):
    return connections.calendar(delegated(user), org_id=ORG, user_id=USER)


# --- tokens ----------------------------------------------------------------------------------------
async def test_one_token_call_serves_many_graph_calls(sandbox, provider, connections, user, outlook):
    assert await provider.writable_calendars() == [outlook.default_calendar_id()]
    for n in range(4):
        await provider.upsert(f"rec-{n}", meeting(f"Call {n}"), None)
    assert await provider.find_by_crm_id("rec-2") is not None
    # A provider opened again for the next message reuses the grant's MSAL cache.
    again = connections.calendar(delegated(user), org_id=ORG, user_id=USER)
    await again.writable_calendars()

    assert calls(sandbox, TOKEN) == 1
    assert calls(sandbox, "/v1.0/users") >= 10


async def test_app_only_grant_reaches_the_tenants_mailbox(sandbox, connections, user, outlook):
    grant = Grant("microsoft", user["email"], None, tenant_id=user["tenant_id"], app_only=True)
    provider = connections.calendar(grant, org_id=ORG, user_id=USER, mailbox=user["email"])
    written = await provider.upsert("rec-1", meeting("Board"), None)
    assert [e["id"] for e in outlook.events()] == [written.provider_id]
    await provider.upsert("rec-2", meeting("Board 2"), None)
    assert calls(sandbox, TOKEN) == 1


async def test_revoked_grant_is_auth_failed(sandbox, provider, connections, user):
    await provider.upsert("rec-1", meeting("Before"), None)
    control(sandbox, "POST", f"/accounts/{user['id']}/revoke")

    with pytest.raises(AuthFailed, match="invalid_grant"):
        await provider.upsert("rec-2", meeting("After"), None)
    # A fresh process holding only the stored refresh token fails the same way.
    fresh = GraphConnections(connections.settings, connections.redis)
    try:
        with pytest.raises(AuthFailed, match="invalid_grant"):
            await fresh.calendar(delegated(user), org_id=ORG, user_id=USER).writable_calendars()
    finally:
        await fresh.aclose()


# --- quota -----------------------------------------------------------------------------------------
async def test_calls_draw_on_the_mailbox_bucket_and_an_empty_one_gives_the_work_back(sandbox, user, redis_url):
    """Three calls a window: the fourth would wait ~200 s, past the deadline, so it is refused at once
    (RateLimited, a TransientError with the wait) instead of holding the partition."""
    redis = connect(redis_url)
    tight = GraphConnections(settings_for(sandbox, user, graph_quota_per_mailbox=3, graph_quota_window_s=600,
                                          rate_limit_max_wait_s=1), redis)
    try:
        provider = tight.calendar(delegated(user), org_id=ORG, user_id=USER)
        for _ in range(3):
            await provider.writable_calendars()
        with pytest.raises(RateLimited) as refused:
            await provider.writable_calendars()
    finally:
        await tight.aclose()
        await redis.aclose()
    assert refused.value.retry_after_s > 100
    assert counted(sandbox, "GET /v1.0/users/{user_id}/calendars") == 3


# --- changes ---------------------------------------------------------------------------------------
async def test_delta_pages_end_in_a_delta_link_then_bring_changes_and_removals(provider, outlook):
    made = [outlook.add(f"Day {n}", days=n) for n in range(1, 6)]
    outlook.add("Far future", days=400)  # beyond the horizon: not in the window

    pages, cursor = await drain(provider, page_cap=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(e.event.title for p in pages for e in p) == [f"Day {n}" for n in range(1, 6)]
    assert all(e.crm_record_id is None and e.updated_at for p in pages for e in p), "the user's own events"

    edited, deleted, moved = made[0], made[1], made[2]
    outlook.api.patch(f"{outlook.events_url}/{edited['id']}", json={"subject": "Day 1, moved to noon"})
    outlook.api.delete(f"{outlook.events_url}/{deleted['id']}")
    later = {which: {"dateTime": at(500, hour).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}
             for which, hour in (("start", 10), ("end", 11))}
    outlook.api.patch(f"{outlook.events_url}/{moved['id']}", json=later)
    written = await provider.upsert("rec-1", meeting("From the CRM", days=3), None)

    pages, next_cursor = await drain(provider, cursor)
    changes = {e.provider_id: e for p in pages for e in p}
    assert changes.keys() == {edited["id"], deleted["id"], moved["id"], written.provider_id}
    assert changes[edited["id"]].event.title == "Day 1, moved to noon"
    assert changes[deleted["id"]].event is None
    # Out of the window is not deleted: it is still the user's event, now in 500 days.
    assert changes[moved["id"]].event.start.date_time == at(500)
    assert changes[written.provider_id].crm_record_id == "rec-1"
    pages, _ = await drain(provider, next_cursor)
    assert pages == [[]]


async def test_a_first_sync_finds_our_events_among_many_with_one_listing(sandbox, connections, user, provider,
                                                                          outlook):
    """More changes than a batch holds: one listing of our events says which are ours, not a read each;
    the provider of the next message lists them again, once for all its pages and writes."""
    own = {outlook.add(f"Mine {n}", days=1 + n % 9)["id"] for n in range(25)}
    ours = await provider.upsert_many([(f"rec-{n}", meeting(f"Synced {n}", days=2), None) for n in range(25)])
    reads_before = counted(sandbox, "GET /v1.0/users/{user_id}/events/{event_id}")
    lists_before = counted(sandbox, LIST_EVENTS)
    next_message = connections.calendar(delegated(user), org_id=ORG, user_id=USER)

    pages, _ = await drain(next_message, page_cap=25)
    found = {e.provider_id: e.crm_record_id for p in pages for e in p}
    assert len(pages) > 1
    assert found == {**dict.fromkeys(own), **{r.provider_id: f"rec-{n}" for n, r in enumerate(ours)}}
    assert counted(sandbox, LIST_EVENTS) - lists_before == 1
    assert counted(sandbox, "GET /v1.0/users/{user_id}/events/{event_id}") == reads_before

    written = await next_message.upsert_many([(f"rec-{n}", meeting(f"Synced {n}!", days=2), None) for n in range(25)])
    assert [w.provider_id for w in written] == [r.provider_id for r in ours]
    assert counted(sandbox, LIST_EVENTS) - lists_before == 1


async def test_incremental_rounds_read_again_only_events_this_process_never_learnt(sandbox, connections, user,
                                                                                     provider, outlook):
    """Our own write's echo and an edit of an event seen before come as delta reported them, with their CRM
    record id, unread; another worker (a process that never saw them) reads them once."""
    users_event = outlook.add("The user's")
    _, cursor = await drain(provider)
    written = await provider.upsert("rec-1", meeting("From the CRM"), None)
    outlook.api.patch(f"{outlook.events_url}/{users_event['id']}", json={"subject": "The user's, renamed"})
    reads, batches = counted(sandbox, READ_EVENT), counted(sandbox, BATCH)

    pages, after = await drain(provider, cursor)
    changes = {e.provider_id: e for p in pages for e in p}
    assert (changes[written.provider_id].crm_record_id, changes[written.provider_id].event.title) == ("rec-1", "From the CRM")
    assert changes[written.provider_id].etag == written.etag
    assert (changes[users_event["id"]].crm_record_id, changes[users_event["id"]].event.title) == \
        (None, "The user's, renamed")
    assert (counted(sandbox, READ_EVENT), counted(sandbox, BATCH)) == (reads, batches)

    another_worker = GraphConnections(connections.settings, connections.redis)
    try:
        elsewhere = another_worker.calendar(delegated(user), org_id=ORG, user_id=USER)
        pages, _ = await drain(elsewhere, cursor)
    finally:
        await another_worker.aclose()
    assert {e.provider_id: e.crm_record_id for p in pages for e in p} == {written.provider_id: "rec-1",
                                                                          users_event["id"]: None}
    assert counted(sandbox, BATCH) == batches + 1, "both read, in one batch"
    pages, _ = await drain(provider, after)
    assert pages == [[]]


async def test_a_series_comes_as_one_event_with_its_rule(provider, outlook):
    start = at(1)
    daily = {"pattern": {"type": "daily", "interval": 1},
             "range": {"type": "numbered", "startDate": start.date().isoformat(), "numberOfOccurrences": 3}}
    series = outlook.add("Stand-up", days=1, recurrence=daily)

    pages, _ = await drain(provider)
    events = [e for p in pages for e in p]
    assert [e.provider_id for e in events] == [series["id"]]
    assert any(line.startswith("RRULE:FREQ=DAILY") for line in events[0].event.recurrence)


async def test_an_occurrence_cancelled_in_outlook_comes_as_a_deletion_of_that_date(sandbox, provider, outlook):
    """Graph's delta re-sends the series and says nothing of the cancelled occurrence: the adapter finds it
    by comparing the series' /instances with its rule: one read of them per series that changed."""
    start = at(1)
    daily = {"pattern": {"type": "daily", "interval": 1},
             "range": {"type": "numbered", "startDate": start.date().isoformat(), "numberOfOccurrences": 3}}
    series = outlook.add("Stand-up", days=1, recurrence=daily)
    pages, cursor = await drain(provider)
    assert [e.provider_id for p in pages for e in p] == [series["id"]], "a whole series cancels nothing"

    window = {"startDateTime": at(0).isoformat(), "endDateTime": at(5).isoformat()}
    listed = outlook.api.get(f"{outlook.events_url}/{series['id']}/instances", params=window).json()["value"]
    assert outlook.api.delete(f"{outlook.events_url}/{listed[1]['id']}").status_code == 204
    instances_route = "GET /v1.0/users/{user_id}/events/{event_id}/instances"
    reads = counted(sandbox, instances_route)
    pages, cursor = await drain(provider, cursor)
    master, cancelled = [e for p in pages for e in p]
    assert master.provider_id == series["id"] and master.event is not None
    assert cancelled.event is None and cancelled.series_id == series["id"]
    assert cancelled.original_start.instant() == at(2)
    assert counted(sandbox, instances_route) - reads == 1

    pages, _ = await drain(provider, cursor)
    assert pages == [[]], "nothing changed: nothing reported again"


async def test_invalidated_delta_token_is_cursor_expired(sandbox, provider, user, outlook):
    outlook.add("Kept")
    _, cursor = await drain(provider)
    control(sandbox, "POST", f"/microsoft/users/{user['id']}/invalidate-delta-tokens")
    with pytest.raises(CursorExpired):
        await provider.list_changes(cursor, 30, 500)


# --- writes ----------------------------------------------------------------------------------------
async def test_the_same_record_written_twice_is_one_event(sandbox, provider, outlook):
    """Twice in one batch, both creates (neither can see the other's event yet): Graph's transactionId
    makes the second create answer the first one's event."""
    results = await provider.upsert_many([("rec-1", meeting("Demo"), None), ("rec-1", meeting("Demo"), None)])
    assert results[0].provider_id == results[1].provider_id
    assert record_ids(outlook.events()) == ["rec-1"]
    assert counted(sandbox, CREATE_EVENT) == 2

    again = await provider.upsert("rec-1", meeting("Demo"), None)
    assert again.provider_id == results[0].provider_id
    assert record_ids(outlook.events()) == ["rec-1"]


async def test_a_lost_mapping_is_found_by_the_extended_property(provider, outlook):
    written = await provider.upsert("rec-1", meeting("Demo"), None)
    assert isinstance(written, WriteResult) and written.written.title == "Demo"

    again = await provider.upsert("rec-1", meeting("Demo, renamed"), None)  # the mapping was lost
    assert again.provider_id == written.provider_id
    assert [e["subject"] for e in outlook.events()] == ["Demo, renamed"]
    found = await provider.find_by_crm_id("rec-1")
    assert (found.provider_id, found.crm_record_id) == (written.provider_id, "rec-1")
    assert found.event.title == "Demo, renamed"
    assert await provider.find_by_crm_id("rec-unknown") is None


async def test_a_write_on_a_stale_etag_is_changed_meanwhile_and_writes_nothing(provider, outlook):
    written = await provider.upsert("rec-1", meeting("Demo"), None)
    current = await provider.upsert("rec-1", meeting("Demo, from the CRM"), written.provider_id, if_match=written.etag)
    assert current.etag != written.etag and current.written.title == "Demo, from the CRM"
    outlook.api.patch(f"{outlook.events_url}/{written.provider_id}", json={"subject": "Demo, edited in Outlook"})

    with pytest.raises(ChangedMeanwhile):
        await provider.upsert("rec-1", meeting("Demo, lost"), written.provider_id, if_match=current.etag)
    assert [e["subject"] for e in outlook.events()] == ["Demo, edited in Outlook"]


async def test_updating_an_event_deleted_in_outlook_creates_it_again(provider, outlook):
    written = await provider.upsert("rec-1", meeting("Demo"), None)
    outlook.api.delete(f"{outlook.events_url}/{written.provider_id}")
    again = await provider.upsert("rec-1", meeting("Demo, edited in the CRM"), written.provider_id)
    assert again.provider_id != written.provider_id
    assert [e["subject"] for e in outlook.events()] == ["Demo, edited in the CRM"]


async def test_45_upserts_take_3_batch_calls(sandbox, provider, outlook):
    items = [(f"rec-{n:02}", meeting(f"Meeting {n}", days=1 + n % 7, hour=8 + n % 9), None)
             for n in range(45)]
    results = await provider.upsert_many(items)

    assert all(isinstance(r, WriteResult) for r in results)
    assert counted(sandbox, BATCH) == 3
    assert counted(sandbox, LIST_EVENTS) == 1, "existing events looked up once, not per record"
    assert record_ids(outlook.events()) == [f"rec-{n:02}" for n in range(45)]
    by_id = {e["id"]: e["subject"] for e in outlook.events()}
    assert [by_id[r.provider_id] for r in results] == [f"Meeting {n}" for n in range(45)], "results in order"

    # The same records again (mappings lost): found, updated, nothing created; what the listing found
    # and this provider's own writes since are known, so a first sync's later chunks list nothing.
    renamed = [(crm, ev.model_copy(update={"title": ev.title + "!"}), None) for crm, ev, _ in items]
    listings = counted(sandbox, LIST_EVENTS)
    again = await provider.upsert_many(renamed)
    assert counted(sandbox, LIST_EVENTS) == listings
    assert [r.provider_id for r in again] == [r.provider_id for r in results]
    assert len(outlook.events()) == 45


async def test_chunks_written_side_by_side_share_one_listing_and_know_each_others_writes(sandbox, provider, outlook):
    """A first sync writes its next chunk while the last one is at Graph: both ask for the listing of our
    events at once, one listing answers both, and what each wrote is known to the provider afterwards."""
    chunks = [[(f"rec-{c}-{n}", meeting(f"Meeting {c} {n}"), None) for n in range(21)] for c in "ab"]
    lists_before = counted(sandbox, LIST_EVENTS)
    first = await asyncio.gather(*(provider.upsert_many(chunk) for chunk in chunks))
    assert counted(sandbox, LIST_EVENTS) - lists_before == 1

    again = await asyncio.gather(*(provider.upsert_many([(crm, ev, None) for crm, ev, _ in chunk]) for chunk in chunks))
    assert [[r.provider_id for r in chunk] for chunk in again] == [[r.provider_id for r in chunk] for chunk in first]
    assert counted(sandbox, LIST_EVENTS) - lists_before == 1
    assert len(outlook.events()) == 42


async def test_a_listed_event_deleted_since_is_written_again(sandbox, provider, outlook):
    """What a bulk write's listing found may be deleted in Outlook later: the update answers 404 and
    the event is created again, once; one this provider deleted itself is known to be gone."""
    first = await provider.upsert_many([(f"rec-{n}", meeting(f"Meeting {n}"), None) for n in range(3)])
    outlook.api.delete(f"{outlook.events_url}/{first[0].provider_id}")
    await provider.delete(first[1].provider_id)

    again = await provider.upsert_many([(f"rec-{n}", meeting(f"Meeting {n}!"), None) for n in range(3)])
    assert all(isinstance(r, WriteResult) for r in again)
    assert again[0].provider_id != first[0].provider_id and again[1].provider_id != first[1].provider_id
    assert again[2].provider_id == first[2].provider_id
    assert sorted(e["subject"] for e in outlook.events()) == ["Meeting 0!", "Meeting 1!", "Meeting 2!"]


async def test_throttled_and_failing_graph_loses_no_write_and_doubles_none(sandbox, provider, outlook):
    control(sandbox, "POST", "/faults", json={"route": "/v1.0/*", "rate_429": 0.1, "rate_5xx": 0.1,
                                              "retry_after_s": 0, "seed": 3})
    items = [(f"rec-{n:02}", meeting(f"Meeting {n}", days=1 + n % 5), None) for n in range(45)]
    results = await provider.upsert_many(items)
    singles = [await provider.upsert(f"one-{n}", meeting(f"Single {n}"), None) for n in range(5)]
    injected = control(sandbox, "GET", "/counters").json()["injected"]
    control(sandbox, "DELETE", "/faults")

    assert [r for r in results if not isinstance(r, WriteResult)] == []
    assert sum(injected.values()) >= 5, injected
    expected = sorted([f"rec-{n:02}" for n in range(45)] + [f"one-{n}" for n in range(5)])
    assert record_ids(outlook.events()) == expected, "every write landed exactly once"
    assert len({r.provider_id for r in results + singles}) == 50


async def test_participants_are_not_invited_unless_the_write_may_notify(provider, outlook):
    guests = (Attendee(email="bob@example.com"), Attendee(email="eve@example.com"))
    quiet = await provider.upsert("rec-1", meeting("Review", attendees=guests), None)
    assert quiet.written.attendees == ()
    assert any("attendees" in note and "invitations" in note for note in quiet.unmapped)

    invited = await provider.upsert("rec-2", meeting("Review 2", attendees=guests), None, notify=True)
    assert [a.email for a in invited.written.attendees] == ["bob@example.com", "eve@example.com"]
    # An update without participants leaves the invitees Outlook has alone.
    await provider.upsert("rec-2", meeting("Review 2, later", hour=15), invited.provider_id)
    event = next(e for e in outlook.events() if e["id"] == invited.provider_id)
    assert len(event["attendees"]) == 2 and event["subject"] == "Review 2, later"


async def test_delete_is_done_when_the_event_is_already_gone(provider, outlook):
    written = await provider.upsert("rec-1", meeting("Demo"), None)
    await provider.delete(written.provider_id)
    await provider.delete(written.provider_id)
    assert outlook.events() == []


async def test_disabling_deletes_synced_events_and_keeps_the_users_own(provider, connections, user, outlook):
    own = [outlook.add(f"Mine {n}", days=n + 1) for n in range(3)]
    await provider.upsert_many([(f"rec-{n}", meeting(f"Synced {n}"), None) for n in range(25)])
    # Another CRM user's sync into the same mailbox is not ours to delete.
    other = connections.calendar(delegated(user), org_id=ORG, user_id="user2")
    theirs = await other.upsert("rec-x", meeting("Someone else's"), None)

    assert await provider.delete_all_synced() == 25
    assert sorted(e["id"] for e in outlook.events()) == sorted([e["id"] for e in own] + [theirs.provider_id])
    assert await provider.delete_all_synced() == 0


# --- push ------------------------------------------------------------------------------------------
@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def subscriptions(sandbox) -> dict[str, dict]:
    return {s["id"]: s for s in control(sandbox, "GET", "/microsoft/subscriptions").json()}


async def test_a_validation_handshake_that_timed_out_is_tried_again(sandbox, connections, user, receiver):
    """Many first syncs opening subscriptions at once kept ingest from answering Graph's handshake in
    time: the job was dead-lettered and the first sync never marked done."""
    answer = receiver.answer_handshake

    def slow_the_first_time(handler, token):
        if len(receiver.validations) == 1:
            time.sleep(0.5)
        answer(handler, token)

    receiver.answer_handshake = slow_the_first_time
    control(sandbox, "PATCH", "/microsoft/settings", json={"validation_timeout_s": 0.2})
    try:
        provider = connections.calendar(delegated(user), org_id=ORG, user_id=USER)
        channel = await provider.watch(receiver.url("/graph"), "s3cret")
    finally:
        control(sandbox, "PATCH", "/microsoft/settings", json={"validation_timeout_s": 10.0})
    assert channel.channel_id in subscriptions(sandbox)
    assert len(receiver.validations) == 3, "one handshake missed, then both URLs answered"


async def test_subscription_is_created_renewed_and_deleted(sandbox, connections, user, receiver, outlook):
    short_lived = settings_for(sandbox, user, graph_subscription_max_minutes=30)
    short = GraphConnections(short_lived, connections.redis)
    try:
        watching = short.calendar(delegated(user), org_id=ORG, user_id=USER)
        channel = await watching.watch(receiver.url("/graph"), "s3cret")
    finally:
        await short.aclose()
    assert len(receiver.validations) == 2, "the notification and lifecycle URLs both answered the handshake"
    assert channel.resource_id == f"users/{user['email']}/events" and channel.secret == "s3cret"
    assert 20 * 60 < channel.expires_at - dt.datetime.now(dt.UTC).timestamp() <= 30 * 60

    outlook.add("Lunch")
    note = wait_for(lambda: receiver.notifications("/graph"), what="a change notification")[0]
    assert note["subscriptionId"] == channel.channel_id and note["clientState"] == "s3cret"

    provider = connections.calendar(delegated(user), org_id=ORG, user_id=USER)  # default: 4,230 minutes
    renewed = await provider.renew(channel)
    assert renewed.channel_id == channel.channel_id and renewed.expires_at - channel.expires_at > 60 * 60
    held = subscriptions(sandbox)[channel.channel_id]
    held_until = dt.datetime.fromisoformat(held["expirationDateTime"]).timestamp()
    assert held_until == pytest.approx(renewed.expires_at, abs=1)

    await provider.unwatch(renewed)
    assert channel.channel_id not in subscriptions(sandbox)
    await provider.unwatch(renewed)  # already gone: done
    with pytest.raises(LookupError):
        await provider.renew(renewed)
