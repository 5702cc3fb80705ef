"""events.list pages that are empty yet carry a nextPageToken, as Google may send them: a client that stops
at the first empty page misses events and never gets the sync token."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import httpx

from tests.sandbox.google_clients import ann, new_user, timed  # noqa: F401


def settings(sandbox, **values) -> None:
    httpx.patch(f"{sandbox.http_url}/_sandbox/google/settings", json=values).raise_for_status()


def test_an_empty_first_page_carries_a_next_page_token_to_the_events(sandbox, ann):
    for n in range(3):
        ann.calendar.events().insert(calendarId="primary", body=timed(f"E{n}")).execute()
    settings(sandbox, empty_first_page=True)
    first = ann.calendar.events().list(calendarId="primary", maxResults=2).execute()
    assert first["items"] == [] and first["nextPageToken"] and "nextSyncToken" not in first
    second = ann.calendar.events().list(calendarId="primary", maxResults=2, pageToken=first["nextPageToken"]).execute()
    last = ann.calendar.events().list(calendarId="primary", maxResults=2, pageToken=second["nextPageToken"]).execute()
    assert [e["summary"] for e in second["items"] + last["items"]] == ["E0", "E1", "E2"]
    token = last["nextSyncToken"]

    ann.calendar.events().insert(calendarId="primary", body=timed("Later")).execute()
    empty = ann.calendar.events().list(calendarId="primary", syncToken=token).execute()
    assert empty["items"] == [] and "nextSyncToken" not in empty, "incremental listings too"
    changes = ann.calendar.events().list(calendarId="primary", syncToken=token, pageToken=empty["nextPageToken"]).execute()
    assert [e["summary"] for e in changes["items"]] == ["Later"] and changes["nextSyncToken"]


def test_reset_restores_full_pages(sandbox):
    settings(sandbox, empty_first_page=True)
    httpx.post(f"{sandbox.http_url}/_sandbox/reset").raise_for_status()
    assert httpx.patch(f"{sandbox.http_url}/_sandbox/google/settings", json={"empty_first_page": "maybe"}).status_code == 400
    listed = new_user(sandbox, "bob@example.com").calendar.events().list(calendarId="primary").execute()
    assert "nextSyncToken" in listed and "nextPageToken" not in listed
