"""events.list and events.instances in the sandbox: sync tokens, pages, filters and recurring series,
driven by google-api-python-client."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import httpx
import pytest
from googleapiclient.errors import HttpError
from starlette.datastructures import QueryParams

from sandbox.google.calendar_query import parse_query
from sandbox.google.calendar_store import Calendar
from tests.sandbox.google_clients import ann, new_user, reason_of, timed  # noqa: F401


def insert(user, **body) -> dict:
    return user.calendar.events().insert(calendarId="primary", body=timed(**body)).execute()


def list_all(user, **params) -> tuple[list[dict], list[dict]]:
    """Every page of a listing: (items, pages)."""
    pages, token = [], None
    while True:
        page = user.calendar.events().list(calendarId="primary", pageToken=token, **params).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if not token:
            return [item for p in pages for item in p["items"]], pages


def test_incremental_sync_returns_only_changes_including_deletions(sandbox, ann):
    kept, changed, removed = insert(ann, summary="kept"), insert(ann, summary="changed"), insert(ann, summary="removed")
    items, pages = list_all(ann)
    assert {e["summary"] for e in items} == {"kept", "changed", "removed"}
    token = pages[-1]["nextSyncToken"]

    events = ann.calendar.events()
    events.patch(calendarId="primary", eventId=changed["id"], body={"summary": "changed twice"}).execute()
    events.delete(calendarId="primary", eventId=removed["id"]).execute()
    added = insert(ann, summary="added")
    delta = events.list(calendarId="primary", syncToken=token).execute()
    by_id = {e["id"]: e for e in delta["items"]}
    assert set(by_id) == {changed["id"], removed["id"], added["id"]}
    assert by_id[removed["id"]]["status"] == "cancelled" and by_id[changed["id"]]["summary"] == "changed twice"
    assert kept["id"] not in by_id

    quiet = events.list(calendarId="primary", syncToken=delta["nextSyncToken"]).execute()
    assert quiet["items"] == [] and quiet["nextSyncToken"]


def test_invalidated_sync_token_is_410_and_a_full_sync_follows(sandbox, ann):
    insert(ann)
    token = ann.calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    forced = httpx.post(f"{sandbox.http_url}/_sandbox/google/accounts/{ann.id}/invalidate-sync-tokens")
    assert forced.status_code == 200
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().list(calendarId="primary", syncToken=token).execute()
    assert raised.value.status_code == 410 and reason_of(raised.value) == "fullSyncRequired"
    assert raised.value.reason == "Sync token is no longer valid, a full sync is required."
    full = ann.calendar.events().list(calendarId="primary").execute()
    assert len(full["items"]) == 1
    assert ann.calendar.events().list(calendarId="primary", syncToken=full["nextSyncToken"]).execute()["items"] == []


def test_garbage_sync_token_also_asks_for_a_full_sync(sandbox, ann):
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().list(calendarId="primary", syncToken="not-a-token").execute()
    assert raised.value.status_code == 410


@pytest.mark.parametrize("params", [
    {"timeMin": "2030-01-01T00:00:00Z"}, {"timeMax": "2030-01-01T00:00:00Z"}, {"q": "x"},
    {"privateExtendedProperty": "crmId=1"}, {"iCalUID": "x@google.com"}, {"updatedMin": "2030-01-01T00:00:00Z"},
    {"orderBy": "updated"}, {"showDeleted": False},
])
def test_sync_token_refuses_filters(sandbox, ann, params):
    token = ann.calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().list(calendarId="primary", syncToken=token, **params).execute()
    assert raised.value.status_code == 400


@pytest.mark.parametrize("params, reason", [
    ({"orderBy": "startTime"}, "badRequest"),
    ({"timeMin": "2030-01-01T00:00:00"}, "badRequest"),
    ({"timeMin": "2030-01-02T00:00:00Z", "timeMax": "2030-01-01T00:00:00Z"}, "timeRangeEmpty"),
    ({"maxResults": 0}, "invalid"),
])
def test_list_parameters_are_checked(sandbox, ann, params, reason):
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().list(calendarId="primary", **params).execute()
    assert raised.value.status_code == 400 and reason_of(raised.value) == reason


def test_pages_carry_next_page_token_and_only_the_last_the_sync_token(sandbox, ann):
    created = [insert(ann, summary=f"e{i}")["id"] for i in range(7)]
    items, pages = list_all(ann, maxResults=3)
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert all("nextPageToken" in p and "nextSyncToken" not in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    assert [e["id"] for e in items] == created


def test_changes_made_while_paging_come_with_the_next_sync(sandbox, ann):
    first = [insert(ann, summary=f"e{i}") for i in range(4)]
    page = ann.calendar.events().list(calendarId="primary", maxResults=2).execute()
    late = insert(ann, summary="late")
    ann.calendar.events().patch(calendarId="primary", eventId=first[0]["id"], body={"summary": "edited"}).execute()
    rest = ann.calendar.events().list(calendarId="primary", maxResults=2, pageToken=page["nextPageToken"]).execute()
    assert late["id"] not in {e["id"] for e in rest["items"]}
    delta = ann.calendar.events().list(calendarId="primary", syncToken=rest["nextSyncToken"]).execute()
    assert {e["id"] for e in delta["items"]} == {late["id"], first[0]["id"]}


def test_time_window_and_start_time_order(sandbox, ann):
    insert(ann, summary="late", start="2030-01-09T10:00:00", end="2030-01-09T11:00:00")
    insert(ann, summary="early", start="2030-01-07T10:00:00", end="2030-01-07T11:00:00")
    insert(ann, summary="outside", start="2030-02-01T10:00:00", end="2030-02-01T11:00:00")
    listed = ann.calendar.events().list(calendarId="primary", singleEvents=True, orderBy="startTime",
                                        timeMin="2030-01-07T10:30:00+01:00", timeMax="2030-01-31T00:00:00Z").execute()
    assert [e["summary"] for e in listed["items"]] == ["early", "late"]


def test_private_extended_property_filter_matches_all_constraints(sandbox, ann):
    insert(ann, summary="a", extendedProperties={"private": {"crmId": "1", "source": "crm"}})
    insert(ann, summary="b", extendedProperties={"private": {"crmId": "2", "source": "crm"}})
    insert(ann, summary="c", extendedProperties={"shared": {"crmId": "1"}})
    one = ann.calendar.events().list(calendarId="primary", privateExtendedProperty="crmId=1").execute()
    assert [e["summary"] for e in one["items"]] == ["a"]
    both = ann.calendar.events().list(calendarId="primary",
                                      privateExtendedProperty=["source=crm", "crmId=2"]).execute()
    assert [e["summary"] for e in both["items"]] == ["b"]
    shared = ann.calendar.events().list(calendarId="primary", sharedExtendedProperty="crmId=1").execute()
    assert [e["summary"] for e in shared["items"]] == ["c"]


def test_deleted_events_show_only_when_asked(sandbox, ann):
    gone = insert(ann, summary="gone")
    ann.calendar.events().delete(calendarId="primary", eventId=gone["id"]).execute()
    assert ann.calendar.events().list(calendarId="primary").execute()["items"] == []
    shown = ann.calendar.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert [(e["id"], e["status"]) for e in shown] == [(gone["id"], "cancelled")]


WEEKLY = {"summary": "Weekly", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Paris:20300121T100000"],
          "start": "2030-01-07T10:00:00", "end": "2030-01-07T11:00:00"}


def test_recurring_series_expands_into_instances_with_googles_ids(sandbox, ann):
    series = insert(ann, **WEEKLY)
    instances = ann.calendar.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert [i["id"] for i in instances] == [
        f"{series['id']}_20300107T090000Z", f"{series['id']}_20300114T090000Z",
        f"{series['id']}_20300128T090000Z", f"{series['id']}_20300204T090000Z"]
    first = instances[0]
    assert first["recurringEventId"] == series["id"] and first["iCalUID"] == series["iCalUID"]
    assert first["originalStartTime"] == {"dateTime": "2030-01-07T10:00:00+01:00", "timeZone": "Europe/Paris"}
    assert "recurrence" not in first


def test_patching_an_instance_makes_an_exception_and_deleting_one_cancels_it(sandbox, ann):
    series = insert(ann, **WEEKLY)
    token = ann.calendar.events().list(calendarId="primary").execute()["nextSyncToken"]
    moved_id, dropped_id = f"{series['id']}_20300114T090000Z", f"{series['id']}_20300128T090000Z"
    events = ann.calendar.events()
    moved = events.patch(calendarId="primary", eventId=moved_id, body={
        "summary": "Moved", "start": {"dateTime": "2030-01-15T14:00:00+01:00"},
        "end": {"dateTime": "2030-01-15T15:00:00+01:00"}}).execute()
    assert moved["recurringEventId"] == series["id"]
    assert moved["originalStartTime"]["dateTime"] == "2030-01-14T10:00:00+01:00"
    events.delete(calendarId="primary", eventId=dropped_id).execute()

    single = events.list(calendarId="primary", singleEvents=True, orderBy="startTime").execute()["items"]
    assert [(i["id"], i.get("summary"), i["start"]["dateTime"]) for i in single] == [
        (f"{series['id']}_20300107T090000Z", "Weekly", "2030-01-07T10:00:00+01:00"),
        (moved_id, "Moved", "2030-01-15T14:00:00+01:00"),
        (f"{series['id']}_20300204T090000Z", "Weekly", "2030-02-04T10:00:00+01:00")]
    delta = events.list(calendarId="primary", syncToken=token).execute()["items"]
    assert {(i["id"], i["status"]) for i in delta} == {(moved_id, "confirmed"), (dropped_id, "cancelled")}
    cancelled = next(i for i in delta if i["id"] == dropped_id)
    assert cancelled["recurringEventId"] == series["id"] and "originalStartTime" in cancelled


def test_series_listed_whole_unless_single_events(sandbox, ann):
    series = insert(ann, **WEEKLY)
    listed = ann.calendar.events().list(calendarId="primary").execute()["items"]
    assert [(e["id"], e["recurrence"]) for e in listed] == [(series["id"], WEEKLY["recurrence"])]


def test_instances_keep_wall_clock_time_across_daylight_saving(sandbox, ann):
    series = insert(ann, summary="Standup", recurrence=["RRULE:FREQ=WEEKLY;UNTIL=20300410"],
                    start="2030-03-18T09:00:00", end="2030-03-18T09:15:00")
    instances = ann.calendar.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert [i["start"]["dateTime"] for i in instances] == [
        "2030-03-18T09:00:00+01:00", "2030-03-25T09:00:00+01:00", "2030-04-01T09:00:00+02:00",
        "2030-04-08T09:00:00+02:00"]


def test_rdate_adds_instances_and_page_size_above_2500_is_accepted(sandbox, ann):
    series = insert(ann, summary="Extra",
                    recurrence=["RRULE:FREQ=DAILY;COUNT=2", "RDATE;TZID=Europe/Paris:20300120T100000"])
    listed = ann.calendar.events().list(calendarId="primary", singleEvents=True, maxResults=5000).execute()
    assert [i["id"] for i in listed["items"]] == [
        f"{series['id']}_20300107T090000Z", f"{series['id']}_20300108T090000Z", f"{series['id']}_20300120T090000Z"]
    assert parse_query(QueryParams("maxResults=5000"), Calendar("c", "c", "UTC")).max_results == 2500


def test_reset_clears_calendars(sandbox, ann):
    insert(ann)
    httpx.post(f"{sandbox.http_url}/_sandbox/reset").raise_for_status()
    again = new_user(sandbox, "ann@example.com")
    assert again.calendar.events().list(calendarId="primary").execute()["items"] == []
