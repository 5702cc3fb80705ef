"""calendarList.list incremental sync and conditional reads (If-None-Match) in the sandbox, driven by
google-api-python-client: the calendars' own writes (calendars.insert/delete, calendarList.patch/delete/
insert) are the changes a sync picks up."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import httplib2
import httpx
import pytest
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.sandbox.google_clients import ann, reason_of, timed  # noqa: F401


def list_all(user, **params) -> tuple[list[dict], list[dict]]:
    """Every page of a calendar list listing: (items, pages)."""
    pages, token = [], None
    while True:
        page = user.calendar.calendarList().list(pageToken=token, **params).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if not token:
            return [item for p in pages for item in p["items"]], pages


def new_calendar(user, summary: str) -> dict:
    return user.calendar.calendars().insert(body={"summary": summary, "timeZone": "Europe/Paris"}).execute()


def share(sandbox, user, role: str, summary: str = "Shared") -> dict:
    answer = httpx.post(f"{sandbox.http_url}/_sandbox/google/accounts/{user.id}/calendars",
                        json={"summary": summary, "access_role": role})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_pages_end_in_a_sync_token_and_a_sync_returns_only_changed_entries(sandbox, ann):
    created = [new_calendar(ann, f"Team {n}") for n in range(4)]
    items, pages = list_all(ann, maxResults=2)
    assert len(pages) == 3 and all("nextSyncToken" not in p for p in pages[:-1])
    assert {c["id"] for c in items} == {"ann@example.com", *(c["id"] for c in created)}
    token = pages[-1]["nextSyncToken"]
    assert ann.calendar.calendarList().list(syncToken=token).execute()["items"] == []

    renamed = ann.calendar.calendarList().patch(calendarId=created[0]["id"], body={"summaryOverride": "Mine"}).execute()
    ann.calendar.calendars().delete(calendarId=created[1]["id"]).execute()
    ann.calendar.calendarList().patch(calendarId=created[2]["id"], body={"hidden": True}).execute()
    added = new_calendar(ann, "Later")
    delta = ann.calendar.calendarList().list(syncToken=token).execute()
    by_id = {c["id"]: c for c in delta["items"]}
    assert set(by_id) == {created[0]["id"], created[1]["id"], created[2]["id"], added["id"]}
    assert by_id[created[0]["id"]]["summaryOverride"] == "Mine" and by_id[created[0]["id"]]["etag"] == renamed["etag"]
    assert by_id[created[1]["id"]]["deleted"] is True
    assert by_id[created[2]["id"]]["hidden"] is True
    assert "deleted" not in by_id[added["id"]] and "hidden" not in by_id[added["id"]]
    quiet = ann.calendar.calendarList().list(syncToken=delta["nextSyncToken"]).execute()
    assert quiet["items"] == [] and quiet["nextSyncToken"]


def test_deleted_and_hidden_entries_show_only_when_asked(sandbox, ann):
    gone, hidden = new_calendar(ann, "Gone"), new_calendar(ann, "Hidden")
    ann.calendar.calendarList().delete(calendarId=gone["id"]).execute()
    ann.calendar.calendarList().patch(calendarId=hidden["id"], body={"hidden": True}).execute()
    plain = [c["id"] for c in list_all(ann)[0]]
    assert plain == ["ann@example.com"]
    with_deleted = {c["id"]: c for c in list_all(ann, showDeleted=True)[0]}
    assert set(with_deleted) == {"ann@example.com", gone["id"]} and with_deleted[gone["id"]]["deleted"] is True
    with_hidden = {c["id"]: c for c in list_all(ann, showHidden=True)[0]}
    assert set(with_hidden) == {"ann@example.com", hidden["id"]} and with_hidden[hidden["id"]]["hidden"] is True
    with pytest.raises(HttpError) as raised:
        ann.calendar.calendarList().get(calendarId=gone["id"]).execute()
    assert raised.value.status_code == 404
    back = ann.calendar.calendarList().insert(body={"id": gone["id"], "colorId": "3"}).execute()
    assert back["id"] == gone["id"] and back["colorId"] == "3" and "deleted" not in back
    assert gone["id"] in [c["id"] for c in list_all(ann)[0]]


def test_min_access_role_filters_a_full_listing(sandbox, ann):
    reader, writer = share(sandbox, ann, "reader", "Holidays"), share(sandbox, ann, "writer", "Team")
    free_busy = share(sandbox, ann, "freeBusyReader", "Boss")
    restricted = share(sandbox, ann, "writerWithoutPrivateAccess", "Desk")
    assert {c["id"] for c in list_all(ann, minAccessRole="writer")[0]} == {"ann@example.com", writer["id"]}
    assert {c["id"] for c in list_all(ann, minAccessRole="writerWithoutPrivateAccess")[0]} == {
        "ann@example.com", writer["id"], restricted["id"]}
    assert {c["id"] for c in list_all(ann, minAccessRole="reader")[0]} == {
        "ann@example.com", writer["id"], reader["id"], restricted["id"]}
    assert len(list_all(ann, minAccessRole="freeBusyReader")[0]) == 5 and free_busy["accessRole"] == "freeBusyReader"


@pytest.mark.parametrize("params", [
    {"minAccessRole": "reader"}, {"showDeleted": False}, {"showHidden": False},
])
def test_sync_token_refuses_what_google_documents(sandbox, ann, params):
    token = ann.calendar.calendarList().list().execute()["nextSyncToken"]
    with pytest.raises(HttpError) as raised:
        ann.calendar.calendarList().list(syncToken=token, **params).execute()
    assert raised.value.status_code == 400 and reason_of(raised.value) == "invalid"


def test_invalidated_or_garbage_sync_token_is_410_and_a_full_listing_follows(sandbox, ann):
    new_calendar(ann, "Team")
    token = ann.calendar.calendarList().list().execute()["nextSyncToken"]
    forced = httpx.post(f"{sandbox.http_url}/_sandbox/google/accounts/{ann.id}/invalidate-sync-tokens")
    assert forced.status_code == 200
    for stale in (token, "not-a-token"):
        with pytest.raises(HttpError) as raised:
            ann.calendar.calendarList().list(syncToken=stale).execute()
        assert raised.value.status_code == 410 and reason_of(raised.value) == "fullSyncRequired"
    full = ann.calendar.calendarList().list().execute()
    assert len(full["items"]) == 2
    assert ann.calendar.calendarList().list(syncToken=full["nextSyncToken"]).execute()["items"] == []


def test_bad_paging_parameters_are_refused(sandbox, ann):
    for params in ({"maxResults": 0}, {"pageToken": "garbage!"}):
        with pytest.raises(HttpError) as raised:
            ann.calendar.calendarList().list(**params).execute()
        assert raised.value.status_code == 400, params
    # The client checks the enum itself; what reaches the API anyway is refused there too.
    refused = httpx.get(f"{sandbox.http_url}/calendar/v3/users/me/calendarList", params={"minAccessRole": "emperor"},
                        headers={"Authorization": f"Bearer {ann.credentials.token}"})
    assert refused.status_code == 400 and refused.json()["error"]["errors"][0]["location"] == "minAccessRole"


def test_primary_calendar_can_be_neither_deleted_nor_removed_from_the_list(sandbox, ann):
    for call in (ann.calendar.calendars().delete(calendarId="primary"),
                 ann.calendar.calendarList().delete(calendarId="primary")):
        with pytest.raises(HttpError) as raised:
            call.execute()
        assert raised.value.status_code == 400
    reader = share(sandbox, ann, "reader")
    with pytest.raises(HttpError) as raised:
        ann.calendar.calendars().delete(calendarId=reader["id"]).execute()
    assert raised.value.status_code == 403


# --- conditional retrieval -----------------------------------------------------------------------------
def conditional(request, etag: str):
    request.headers["If-None-Match"] = etag
    return request


def test_if_none_match_with_the_current_etag_is_304_which_the_client_raises(sandbox, ann):
    event = ann.calendar.events().insert(calendarId="primary", body=timed("Review")).execute()
    gets = {
        "event": (lambda: ann.calendar.events().get(calendarId="primary", eventId=event["id"]), event["etag"]),
        "entry": (lambda: ann.calendar.calendarList().get(calendarId="primary"), None),
        "calendar": (lambda: ann.calendar.calendars().get(calendarId="primary"), None),
    }
    for name, (request, etag) in gets.items():
        etag = etag or request().execute()["etag"]
        # google-api-python-client treats every status >= 300 as an error: a 304 is an HttpError.
        with pytest.raises(HttpError) as raised:
            conditional(request(), etag).execute()
        assert raised.value.status_code == 304 and raised.value.content == b"", name
        assert conditional(request(), '"stale"').execute()["etag"] == etag, name


def test_a_changed_event_answers_its_new_version_to_the_old_etag(sandbox, ann):
    event = ann.calendar.events().insert(calendarId="primary", body=timed("Review")).execute()
    changed = ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "Moved"}).execute()
    fresh = conditional(ann.calendar.events().get(calendarId="primary", eventId=event["id"]), event["etag"]).execute()
    assert fresh["summary"] == "Moved" and fresh["etag"] == changed["etag"] != event["etag"]


def test_an_http_cache_revalidates_with_the_etag_and_serves_the_304_from_cache(sandbox, ann, tmp_path):
    event = ann.calendar.events().insert(calendarId="primary", body=timed("Review")).execute()
    cached = AuthorizedHttp(ann.credentials, http=httplib2.Http(cache=str(tmp_path)))
    client = build("calendar", "v3", http=cached, static_discovery=True, cache_discovery=False,
                   client_options={"api_endpoint": f"{sandbox.http_url}/calendar/v3/"})
    seen = []
    for _ in range(2):
        request = client.events().get(calendarId="primary", eventId=event["id"])
        request.add_response_callback(lambda resp: seen.append((resp.status, resp.fromcache)))
        assert request.execute() == event
    # httplib2 sent If-None-Match on the second read, got 304 and answered from its cache.
    assert seen == [(200, False), (200, True)]
    counted = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["calls"]
    assert counted["GET /calendar/v3/calendars/{calendarId}/events/{eventId}"] == 2
