"""GoogleCalendarProvider against the sandbox's Calendar v3 and OAuth, and the real Redis for its quota."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import httpx
import pytest

from services.calendar_sync.model import Attendee, CanonicalEvent, EventTime
from services.calendar_sync.ports import AuthFailed, ChangedMeanwhile, CursorExpired, NotWritable, WriteResult
from services.calendar_sync.rules import google_event_id
from services.common.ratelimit import TokenBucket
from services.common.settings import Settings
from services.common.state import connect
from services.common.tokens import Grant
from services.providers.google.calendar import GoogleCalendarProvider
from tests.fixtures.net import wait_for
from tests.sandbox.google_clients import WebhookReceiver, calendar_client, credentials_for, timed

pytestmark = pytest.mark.integration

ORG, USER = "org1", "user1"
INSERT = "POST /calendar/v3/calendars/{calendarId}/events"
PATCH = "PATCH /calendar/v3/calendars/{calendarId}/events/{eventId}"
BATCH = "POST /batch/calendar/v3"
TOKEN = "POST /token"


# --- arranging -------------------------------------------------------------------------------------
def control(sandbox, method: str, path: str, **kwargs) -> httpx.Response:
    answer = httpx.request(method, f"{sandbox.http_url}/_sandbox{path}", **kwargs)
    answer.raise_for_status()
    return answer


def new_account(sandbox, email: str = "ann@example.com") -> dict:
    return control(sandbox, "POST", "/accounts", json={"provider": "google", "email": email}).json()


def counters(sandbox) -> dict:
    return control(sandbox, "GET", "/counters").json()["calls"]


def settings_for(sandbox, account: dict) -> Settings:
    return Settings(
        env="test", google_api_base_url=sandbox.http_url, google_token_url=f"{sandbox.http_url}/token",
        google_client_id=account["client_id"], google_client_secret=account["client_secret"],
        retry_max_attempts=10, retry_base_delay_s=0.01, retry_max_delay_s=0.2,
    )


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def account(sandbox) -> dict:
    return new_account(sandbox)


@pytest.fixture
def webhook():
    running = WebhookReceiver().start()
    yield running
    running.stop()


def fresh_bucket(redis, capacity: float = 600, refill_per_s: float = 10) -> TokenBucket:
    """A bucket of its own per test, so that tests do not draw on each other's tokens."""
    return TokenBucket(redis, f"crmsync:ratelimit:test:{uuid.uuid4().hex}", capacity, refill_per_s)


@pytest.fixture
def provider(sandbox, account, redis) -> GoogleCalendarProvider:
    return open_provider(sandbox, account, redis)


def open_provider(sandbox, account, redis, calendar_id: str = "primary", bucket: TokenBucket | None = None):
    grant = Grant("google", account["email"], account["refresh_token"])
    return GoogleCalendarProvider(settings_for(sandbox, account), grant, ORG, USER, bucket or fresh_bucket(redis),
                                  calendar_id)


def raw_calendar(sandbox, account):
    """The user's own client, to look at and change the calendar as the user would in Google."""
    return calendar_client(sandbox, credentials_for(sandbox, account))


def event(title: str = "Call", day: int = 7, hour: int = 10, **fields) -> CanonicalEvent:
    start = dt.datetime(2030, 1, day, hour, tzinfo=dt.UTC)
    return CanonicalEvent(
        title=title,
        start=EventTime(date_time=start, time_zone="UTC"),
        end=EventTime(date_time=start + dt.timedelta(hours=1), time_zone="UTC"),
        **fields,
    )


def live_events(sandbox, account) -> list[dict]:
    items, token = [], None
    while True:
        page = raw_calendar(sandbox, account).events().list(calendarId="primary", maxResults=2500,
                                                             pageToken=token).execute()
        items += page.get("items", [])
        token = page.get("nextPageToken")
        if not token:
            return items


def expire_access_tokens(sandbox, account_id: str) -> None:
    """As if an hour had passed: every access token of the account is refused from now on."""
    state = sandbox.sandbox.state
    with state.lock:
        for grant in state.access_tokens.values():
            if grant.account_id == account_id:
                grant.expires_at = 0


# --- calendars and credentials ---------------------------------------------------------------------
async def test_writable_calendars_are_those_the_user_owns_or_writes(sandbox, account, provider):
    added = {role: control(sandbox, "POST", f"/google/accounts/{account['id']}/calendars",
                           json={"summary": role, "access_role": role}).json()["id"]
             for role in ("owner", "writer", "reader", "freeBusyReader")}
    writable = await provider.writable_calendars()
    assert sorted(writable) == sorted([account["email"], added["owner"], added["writer"]])


async def test_an_expired_access_token_is_refreshed_for_real(sandbox, account, provider):
    await provider.writable_calendars()
    assert counters(sandbox)[TOKEN] == 1
    expire_access_tokens(sandbox, account["id"])
    assert account["email"] in await provider.writable_calendars()
    assert counters(sandbox)[TOKEN] == 2


async def test_a_revoked_grant_is_auth_failed(sandbox, account, provider):
    await provider.writable_calendars()
    control(sandbox, "POST", f"/accounts/{account['id']}/revoke")
    with pytest.raises(AuthFailed):
        await provider.writable_calendars()
    with pytest.raises(AuthFailed):
        await provider.upsert_many([(f"rec{n}", event(), None) for n in range(3)])


async def test_a_grant_revoked_before_the_first_call_is_auth_failed(sandbox, account, redis):
    control(sandbox, "POST", f"/accounts/{account['id']}/revoke")
    with pytest.raises(AuthFailed):
        await open_provider(sandbox, account, redis).upsert("rec1", event(), None)


# --- writing -----------------------------------------------------------------------------------------
async def test_upsert_creates_the_event_under_our_id_with_our_record_id(sandbox, account, provider):
    crm_event = event("Kick-off", attendees=(Attendee(email="bob@example.com"),), reminders_minutes=(10, 30))
    result = await provider.upsert("rec1", crm_event, None)
    assert result.provider_id == google_event_id(ORG, USER, "rec1")
    assert result.etag and result.written is not None
    assert result.written.title == "Kick-off" and result.written.reminders_minutes == (10, 30)
    assert result.unmapped == ()
    stored = raw_calendar(sandbox, account).events().get(calendarId="primary", eventId=result.provider_id).execute()
    assert stored["extendedProperties"]["private"] == {"crmsync_record_id": "rec1", "crmsync_org": ORG}
    assert stored["status"] == "confirmed" and stored["etag"] == result.etag


async def test_the_same_record_upserted_twice_is_one_event(sandbox, account, provider):
    first = await provider.upsert("rec1", event("First"), None)
    second = await provider.upsert("rec1", event("Second"), None)  # the mapping was lost in between
    assert first.provider_id == second.provider_id
    events = live_events(sandbox, account)
    assert [(e["id"], e["summary"]) for e in events] == [(first.provider_id, "Second")]


async def test_an_upsert_after_the_event_was_deleted_brings_back_the_same_event(sandbox, account, provider):
    created = await provider.upsert("rec1", event("Before"), None)
    await provider.delete(created.provider_id)
    assert live_events(sandbox, account) == []
    again = await provider.upsert("rec1", event("After"), None)  # re-enabled after deleting the configuration
    assert again.provider_id == created.provider_id
    events = live_events(sandbox, account)
    assert [(e["id"], e["status"], e["summary"]) for e in events] == [(created.provider_id, "confirmed", "After")]


async def test_an_upsert_with_the_known_id_patches_it(sandbox, account, provider):
    created = await provider.upsert("rec1", event("Before"), None)
    updated = await provider.upsert("rec1", event("After", day=8), created.provider_id)
    assert updated.provider_id == created.provider_id and updated.etag != created.etag
    assert updated.written.title == "After" and updated.written.start == event(day=8).start
    assert counters(sandbox)[PATCH] == 1
    assert len(live_events(sandbox, account)) == 1


async def test_a_conditional_patch_lands_while_google_holds_our_version_and_is_refused_after_a_user_edit(
        sandbox, account, provider):
    created = await provider.upsert("rec1", event("Before"), None)
    ours = await provider.upsert("rec1", event("Ours"), created.provider_id, if_match=created.etag)
    assert ours.written.title == "Ours" and ours.etag != created.etag
    raw_calendar(sandbox, account).events().patch(calendarId="primary", eventId=created.provider_id,
                                                  body={"location": "Room 2"}).execute()
    with pytest.raises(ChangedMeanwhile):
        await provider.upsert("rec1", event("Stale"), created.provider_id, if_match=ours.etag)
    (held,) = live_events(sandbox, account)
    assert (held["summary"], held["location"]) == ("Ours", "Room 2"), "the refused write changed nothing"


async def test_a_linked_event_that_is_gone_is_written_under_our_id(sandbox, account, provider):
    result = await provider.upsert("rec1", event(), "gone0000000000")
    assert result.provider_id == google_event_id(ORG, USER, "rec1")
    assert [e["id"] for e in live_events(sandbox, account)] == [result.provider_id]


async def test_a_user_event_linked_to_a_record_is_patched_in_place(sandbox, account, provider):
    theirs = raw_calendar(sandbox, account).events().insert(
        calendarId="primary", body=timed("Theirs", start="2030-01-07T10:00:00", end="2030-01-07T11:00:00")).execute()
    result = await provider.upsert("rec1", event("From the CRM"), theirs["id"])
    assert result.provider_id == theirs["id"]
    assert [(e["id"], e["summary"]) for e in live_events(sandbox, account)] == [(theirs["id"], "From the CRM")]


async def test_no_write_mails_attendees(sandbox, account, provider):
    guests = (Attendee(email="bob@example.com"), Attendee(email="eve@example.com"))
    created = await provider.upsert("rec1", event(attendees=guests), None)
    await provider.upsert("rec1", event("Moved", day=9, attendees=guests), created.provider_id)
    await provider.upsert("rec1", event("Again", attendees=guests), None)
    await provider.upsert_many([(f"rec{n}", event(attendees=guests), None) for n in range(2, 6)])
    await provider.delete(created.provider_id)
    sent = control(sandbox, "GET", f"/google/accounts/{account['id']}/sent-updates").json()
    assert {s["method"] for s in sent} == {"events.insert", "events.patch", "events.delete"}
    assert {s["sendUpdates"] for s in sent} == {"none"}


async def test_what_a_write_returns_is_what_a_listing_reads_back(sandbox, account, provider):
    """Echo detection compares these fingerprints: they must agree, zone or no zone."""
    start = dt.datetime(2030, 1, 7, 10, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    floating = event("No zone").model_copy(update={
        "start": EventTime(date_time=start), "end": EventTime(date_time=start + dt.timedelta(hours=1))})
    zoned = event("Paris", attendees=(Attendee(email="bob@example.com", name="Bob"),), reminders_minutes=(5, 60))
    all_day = event("Holiday").model_copy(update={
        "start": EventTime(date=dt.date(2030, 1, 7)), "end": EventTime(date=dt.date(2030, 1, 8))})
    written = await provider.upsert_many([("rec1", floating, None), ("rec2", zoned, None), ("rec3", all_day, None)])
    listed, _, _ = await read_all(provider, None, page_cap=500)
    by_id = {e.provider_id: e.event.fingerprint() for e in listed}
    assert {r.provider_id: r.written.fingerprint() for r in written} == by_id


async def test_what_google_cannot_hold_is_reported(provider):
    result = await provider.upsert("rec1", event(reminders_minutes=(1, 2, 3, 4, 5, 6, 7)), None)
    assert len(result.written.reminders_minutes) == 5
    assert result.unmapped and any("remind" in cut for cut in result.unmapped)


async def test_a_calendar_the_user_may_only_read_is_not_writable(sandbox, account, redis):
    reader = control(sandbox, "POST", f"/google/accounts/{account['id']}/calendars",
                     json={"summary": "team", "access_role": "reader"}).json()["id"]
    with pytest.raises(NotWritable):
        await open_provider(sandbox, account, redis, calendar_id=reader).upsert("rec1", event(), None)


async def test_delete_is_done_when_the_event_is_gone_already(sandbox, account, provider):
    created = await provider.upsert("rec1", event(), None)
    await provider.delete(created.provider_id)
    await provider.delete(created.provider_id)  # 410 deleted
    await provider.delete("neverexisted00")  # 404
    assert live_events(sandbox, account) == []


async def test_find_by_crm_id_finds_only_our_live_event(sandbox, account, provider):
    created = await provider.upsert("rec1", event("Ours"), None)
    raw_calendar(sandbox, account).events().insert(calendarId="primary", body=timed("Not ours")).execute()
    found = await provider.find_by_crm_id("rec1")
    assert found is not None and found.provider_id == created.provider_id
    assert found.crm_record_id == "rec1" and found.event.title == "Ours" and found.etag == created.etag
    assert await provider.find_by_crm_id("rec2") is None
    await provider.delete(created.provider_id)
    assert await provider.find_by_crm_id("rec1") is None


# --- batches, quota and faults ---------------------------------------------------------------------------
async def test_120_upserts_go_out_in_3_batches(sandbox, account, redis):
    bucket = fresh_bucket(redis, capacity=1000, refill_per_s=0.001)
    provider = open_provider(sandbox, account, redis, bucket=bucket)
    items = [(f"rec{n}", event(f"e{n}", day=1 + n % 28), None) for n in range(120)]
    results = await provider.upsert_many(items)
    assert all(isinstance(r, WriteResult) for r in results)
    assert [r.provider_id for r in results] == [google_event_id(ORG, USER, f"rec{n}") for n in range(120)]
    assert [r.written.title for r in results] == [f"e{n}" for n in range(120)]
    calls = counters(sandbox)
    assert calls[BATCH] == 3 and calls[INSERT] == 120
    assert len(live_events(sandbox, account)) == 120
    # Each call in a batch took its own token from the shared bucket (one more: the listing above is
    # not the provider's, so it took none).
    tokens = float(await redis.hget(bucket.name, "tokens"))
    assert tokens == pytest.approx(1000 - 120, abs=1)


async def test_a_batch_mixing_new_known_and_deleted_events_ends_with_one_event_each(sandbox, account, provider):
    known = await provider.upsert("rec1", event("known"), None)
    deleted = await provider.upsert("rec2", event("deleted"), None)
    await provider.delete(deleted.provider_id)
    results = await provider.upsert_many([
        ("rec1", event("known, changed"), known.provider_id),
        ("rec2", event("deleted, back"), None),
        ("rec3", event("new"), None),
        ("rec4", event("linked but gone"), "gone0000000000"),
    ])
    assert [r.written.title for r in results] == ["known, changed", "deleted, back", "new", "linked but gone"]
    titles = sorted(e["summary"] for e in live_events(sandbox, account))
    assert titles == ["deleted, back", "known, changed", "linked but gone", "new"]


@pytest.mark.parametrize("google_403", [False, True], ids=["429-and-503", "403-rateLimitExceeded-and-503"])
async def test_with_20_percent_throttling_and_5xx_every_upsert_lands_exactly_once(sandbox, account, provider,
                                                                                 google_403):
    await provider.writable_calendars()  # the token is refreshed before the faults start
    control(sandbox, "POST", "/faults", json={"route": "/calendar/v3/*", "rate_429": 0.1, "rate_5xx": 0.1,
                                              "seed": 7, "google_403_rate_limit": google_403})
    items = [(f"rec{n}", event(f"e{n}", day=1 + n % 28), None) for n in range(120)]
    results = await provider.upsert_many(items)
    singles = [await provider.upsert(f"single{n}", event(f"s{n}"), None) for n in range(10)]
    assert all(isinstance(r, WriteResult) for r in results)
    injected = control(sandbox, "GET", "/counters").json()["injected"]
    assert sum(injected.values()) > 20
    control(sandbox, "DELETE", "/faults")
    events = live_events(sandbox, account)
    expected = {r.provider_id for r in results} | {s.provider_id for s in singles}
    assert len(events) == 130 and {e["id"] for e in events} == expected


async def test_every_call_waits_for_the_shared_bucket(sandbox, account, redis):
    bucket = fresh_bucket(redis, capacity=2, refill_per_s=20)
    provider = open_provider(sandbox, account, redis, bucket=bucket)
    started = time.monotonic()
    for n in range(6):
        await provider.upsert(f"rec{n}", event(), None)
    # 6 calls from a bucket of 2 refilled at 20/s: the last 4 waited 1/20 s each at least.
    assert time.monotonic() - started >= 4 / 20 - 0.02


# --- reading -------------------------------------------------------------------------------------------
def seed_user_events(sandbox, account) -> dict[str, dict]:
    calendar = raw_calendar(sandbox, account).events()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    soon, old = now + dt.timedelta(days=2), now - dt.timedelta(days=200)
    fmt = "%Y-%m-%dT%H:%M:%S"
    made = {}
    for n in range(5):
        start = soon + dt.timedelta(hours=n)
        made[f"soon{n}"] = calendar.insert(calendarId="primary", body=timed(
            f"soon{n}", start=start.strftime(fmt), end=(start + dt.timedelta(hours=1)).strftime(fmt),
            zone="UTC")).execute()
    made["old"] = calendar.insert(calendarId="primary", body=timed(
        "old", start=old.strftime(fmt), end=(old + dt.timedelta(hours=1)).strftime(fmt), zone="UTC")).execute()
    made["weekly"] = calendar.insert(calendarId="primary", body=timed(
        "weekly", start=soon.strftime(fmt), end=(soon + dt.timedelta(hours=1)).strftime(fmt), zone="UTC",
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"])).execute()
    return made


async def read_all(provider, cursor, page_cap):
    """Every page of one listing; the events and the number of calls it took."""
    events, page_token, pages = [], None, 0
    while True:
        page = await provider.list_changes(cursor, 90, page_cap, page_token)
        pages += 1
        events += page.events
        if page.next_cursor is None:
            return events, page.final_cursor, pages
        assert page.final_cursor is None
        page_token = page.next_cursor


async def test_a_full_listing_takes_the_window_with_series_as_masters(sandbox, account, provider):
    made = seed_user_events(sandbox, account)
    ours = await provider.upsert("rec1", event("ours"), None)
    events, final, pages = await read_all(provider, None, page_cap=3)
    assert final and pages == 3
    titles = sorted(e.event.title for e in events)
    assert titles == sorted(["ours", "weekly"] + [f"soon{n}" for n in range(5)])  # not "old": out of window
    weekly = next(e for e in events if e.provider_id == made["weekly"]["id"])
    assert weekly.event.recurrence == ("RRULE:FREQ=WEEKLY;COUNT=10",)
    assert next(e for e in events if e.provider_id == ours.provider_id).crm_record_id == "rec1"
    assert all(e.etag and e.updated_at for e in events)


async def test_changes_since_the_sync_token_include_deletions(sandbox, account, provider):
    made = seed_user_events(sandbox, account)
    _, cursor, _ = await read_all(provider, None, page_cap=500)
    calendar = raw_calendar(sandbox, account).events()
    calendar.patch(calendarId="primary", eventId=made["soon0"]["id"], body={"summary": "renamed"}).execute()
    calendar.delete(calendarId="primary", eventId=made["soon1"]["id"]).execute()
    ours = await provider.upsert("rec1", event("ours"), None)
    changes, next_cursor, _ = await read_all(provider, cursor, page_cap=500)
    by_id = {e.provider_id: e for e in changes}
    assert set(by_id) == {made["soon0"]["id"], made["soon1"]["id"], ours.provider_id}
    assert by_id[made["soon0"]["id"]].event.title == "renamed"
    assert by_id[made["soon1"]["id"]].event is None
    assert by_id[ours.provider_id].crm_record_id == "rec1"
    assert next_cursor and next_cursor != cursor
    assert (await provider.list_changes(next_cursor, 90, 500)).events == []


async def test_an_incremental_pull_stops_at_the_page_cap(sandbox, account, provider):
    _, cursor, _ = await read_all(provider, None, page_cap=500)
    await provider.upsert_many([(f"rec{n}", event(f"e{n}"), None) for n in range(7)])
    first = await provider.list_changes(cursor, 90, 5)
    assert len(first.events) == 5 and first.next_cursor and first.final_cursor is None
    rest = await provider.list_changes(cursor, 90, 5, first.next_cursor)
    assert len(rest.events) == 2 and rest.next_cursor is None and rest.final_cursor
    assert {e.crm_record_id for e in first.events + rest.events} == {f"rec{n}" for n in range(7)}


async def test_a_stale_sync_token_is_cursor_expired(sandbox, account, provider):
    _, cursor, _ = await read_all(provider, None, page_cap=500)
    control(sandbox, "POST", f"/google/accounts/{account['id']}/invalidate-sync-tokens")
    with pytest.raises(CursorExpired):
        await provider.list_changes(cursor, 90, 500)
    _, fresh, _ = await read_all(provider, None, page_cap=500)  # the full resync works
    assert fresh and fresh != cursor


# --- push channels ---------------------------------------------------------------------------------------
async def test_watch_opens_a_channel_that_carries_our_secret_and_unwatch_stops_it(sandbox, account, provider,
                                                                                  webhook):
    channel = await provider.watch(webhook.url, "s3cret")
    assert channel.resource_id and channel.secret == "s3cret" and channel.expires_at > time.time()
    await provider.upsert("rec1", event(), None)
    wait_for(lambda: any(n.headers.get("X-Goog-Resource-State") == "exists"
                         for n in webhook.for_channel(channel.channel_id)), what="a change notification")
    assert {n.headers.get("X-Goog-Channel-Token") for n in webhook.for_channel(channel.channel_id)} == {"s3cret"}
    await provider.unwatch(channel)
    await provider.unwatch(channel)  # stopped already: fine
    states = {c["id"]: c["state"] for c in control(sandbox, "GET", "/google/channels").json()}
    assert states[channel.channel_id] == "stopped"
