"""Calendar v3 in the sandbox, driven by google-api-python-client: calendars, event writes and their
refusals, etags, sendUpdates and quota errors. Listing and sync: test_google_calendar_sync.py."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import httpx
import pytest
from googleapiclient.errors import HttpError

from tests.sandbox.google_clients import ann, reason_of, timed  # noqa: F401


def add_calendar(sandbox, user, **body) -> dict:
    response = httpx.post(f"{sandbox.http_url}/_sandbox/google/accounts/{user.id}/calendars", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_calendar_list_has_the_primary_calendar_and_added_ones_with_their_access_role(sandbox, ann):
    team = add_calendar(sandbox, ann, summary="Team", access_role="reader", time_zone="Europe/Paris")
    items = {c["id"]: c for c in ann.calendar.calendarList().list().execute()["items"]}
    assert items["ann@example.com"]["primary"] is True
    assert items["ann@example.com"]["accessRole"] == "owner"
    assert items[team["id"]]["accessRole"] == "reader" and "primary" not in items[team["id"]]
    assert ann.calendar.calendars().get(calendarId="primary").execute()["id"] == "ann@example.com"
    writable = ann.calendar.calendarList().list(minAccessRole="writer").execute()["items"]
    assert [c["id"] for c in writable] == ["ann@example.com"]


def test_a_read_only_calendar_refuses_writes_but_lists_its_events(sandbox, ann):
    team = add_calendar(sandbox, ann, summary="Team", access_role="reader")
    seeded = httpx.post(f"{sandbox.http_url}/_sandbox/google/accounts/{ann.id}/calendars/{team['id']}/events",
                        json=timed("Offsite"))
    assert seeded.status_code == 201
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().insert(calendarId=team["id"], body=timed()).execute()
    assert raised.value.status_code == 403 and reason_of(raised.value) == "requiredAccessLevel"
    listed = ann.calendar.events().list(calendarId=team["id"]).execute()
    assert [e["summary"] for e in listed["items"]] == ["Offsite"] and listed["accessRole"] == "reader"


def test_unknown_calendar_is_404(sandbox, ann):
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().list(calendarId="nobody@example.com").execute()
    assert raised.value.status_code == 404 and reason_of(raised.value) == "notFound"


def test_insert_returns_the_event_as_google_does(sandbox, ann):
    event = ann.calendar.events().insert(calendarId="primary", body=timed(
        "Kick-off", location="Room 1", attendees=[{"email": "bob@example.com", "displayName": "Bob"},
                                                  {"email": "ann@example.com"}],
    )).execute()
    assert event["kind"] == "calendar#event" and event["status"] == "confirmed"
    assert event["iCalUID"] == f"{event['id']}@google.com" and event["sequence"] == 0
    assert event["start"] == {"dateTime": "2030-01-07T10:00:00+01:00", "timeZone": "Europe/Paris"}
    assert event["organizer"] == {"email": "ann@example.com", "self": True}
    assert event["reminders"] == {"useDefault": True}
    bob, me = event["attendees"]
    assert bob == {"email": "bob@example.com", "displayName": "Bob", "responseStatus": "needsAction"}
    assert me["self"] is True and me["organizer"] is True
    assert ann.calendar.events().get(calendarId="primary", eventId=event["id"]).execute() == event


def test_all_day_event_and_given_ical_uid(sandbox, ann):
    event = ann.calendar.events().insert(calendarId="primary", body={
        "summary": "Holiday", "start": {"date": "2030-05-01"}, "end": {"date": "2030-05-02"}, "iCalUID": "x@crm",
    }).execute()
    assert event["start"] == {"date": "2030-05-01"} and event["iCalUID"] == "x@crm"


def test_client_ids_must_be_base32hex_and_stay_taken_after_a_delete(sandbox, ann):
    events = ann.calendar.events()
    for bad in ("ABCDEF", "abcd", "crm-123456", "wxyz12345"):
        with pytest.raises(HttpError) as raised:
            events.insert(calendarId="primary", body=timed(id=bad)).execute()
        assert raised.value.status_code == 400, bad
    events.insert(calendarId="primary", body=timed(id="crm0001abc")).execute()
    with pytest.raises(HttpError) as raised:
        events.insert(calendarId="primary", body=timed(id="crm0001abc")).execute()
    assert raised.value.status_code == 409 and reason_of(raised.value) == "duplicate"
    events.delete(calendarId="primary", eventId="crm0001abc").execute()
    with pytest.raises(HttpError) as raised:
        events.insert(calendarId="primary", body=timed(id="crm0001abc")).execute()
    assert raised.value.status_code == 409
    with pytest.raises(HttpError) as raised:
        events.delete(calendarId="primary", eventId="crm0001abc").execute()
    assert raised.value.status_code == 410 and reason_of(raised.value) == "deleted"
    assert events.get(calendarId="primary", eventId="crm0001abc").execute()["status"] == "cancelled"


def test_every_write_changes_etag_and_updated_and_time_changes_bump_sequence(sandbox, ann):
    events = ann.calendar.events()
    first = events.insert(calendarId="primary", body=timed()).execute()
    renamed = events.patch(calendarId="primary", eventId=first["id"], body={"summary": "Renamed"}).execute()
    assert renamed["etag"] != first["etag"] and renamed["updated"] > first["updated"]
    assert renamed["sequence"] == 0 and renamed["created"] == first["created"]
    moved = events.patch(calendarId="primary", eventId=first["id"],
                         body={"start": {"dateTime": "2030-01-07T12:00:00+01:00"},
                               "end": {"dateTime": "2030-01-07T13:00:00+01:00"}}).execute()
    assert moved["sequence"] == 1 and moved["summary"] == "Renamed"
    assert moved["start"] == {"dateTime": "2030-01-07T12:00:00+01:00", "timeZone": "Europe/Paris"}


def test_stale_if_match_is_412_and_current_one_passes(sandbox, ann):
    events = ann.calendar.events()
    event = events.insert(calendarId="primary", body=timed()).execute()
    events.patch(calendarId="primary", eventId=event["id"], body={"summary": "Changed in Google"}).execute()
    stale = events.patch(calendarId="primary", eventId=event["id"], body={"summary": "From the CRM"})
    stale.headers["If-Match"] = event["etag"]
    with pytest.raises(HttpError) as raised:
        stale.execute()
    assert raised.value.status_code == 412 and reason_of(raised.value) == "conditionNotMet"
    current = events.get(calendarId="primary", eventId=event["id"]).execute()
    update = events.update(calendarId="primary", eventId=event["id"], body=timed("From the CRM"))
    update.headers["If-Match"] = current["etag"]
    assert update.execute()["summary"] == "From the CRM"


def test_update_replaces_and_patch_merges(sandbox, ann):
    events = ann.calendar.events()
    event = events.insert(calendarId="primary", body=timed(
        description="notes", extendedProperties={"private": {"crmId": "42", "owner": "u1"}})).execute()
    patched = events.patch(calendarId="primary", eventId=event["id"],
                           body={"extendedProperties": {"private": {"owner": "u2"}}}).execute()
    assert patched["extendedProperties"]["private"] == {"crmId": "42", "owner": "u2"}
    assert patched["description"] == "notes"
    replaced = events.update(calendarId="primary", eventId=event["id"], body=timed("Only this")).execute()
    assert "description" not in replaced and "extendedProperties" not in replaced


@pytest.mark.parametrize("body, reason, message", [
    (timed(end="2030-01-07T09:00:00"), "timeRangeEmpty", "The specified time range is empty."),
    (timed(zone="Mars/Olympus_Mons"), "invalid", "Invalid time zone definition for start time."),
    ({"summary": "x", "start": {"dateTime": "2030-01-07T10:00:00"}, "end": {"dateTime": "2030-01-07T11:00:00"}},
     "required", "Missing time zone definition for start time."),
    ({"summary": "x", "recurrence": ["RRULE:FREQ=DAILY"], "start": {"dateTime": "2030-01-07T10:00:00Z"},
      "end": {"dateTime": "2030-01-07T11:00:00Z"}}, "required", "Missing time zone definition for start time."),
    ({"summary": "x", "start": {"date": "2030-01-07"}}, "required", "Missing end time."),
    (timed(recurrence=["RRULE:FREQ=SOMETIMES"]), "invalid", "Invalid recurrence rule."),
    (timed(reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}] * 6}),
     "eventRemindersCountExceedsLimit", "The maximum number of override reminders is 5."),
    (timed(reminders={"useDefault": True, "overrides": [{"method": "popup", "minutes": 5}]}),
     "cannotUseDefaultRemindersAndSpecifyOverride",
     "Cannot specify both default reminders and overrides at the same time."),
    (timed(reminders={"useDefault": False, "overrides": [{"method": "sms", "minutes": 5}]}), "invalid", None),
    (timed(reminders={"useDefault": False, "overrides": [{"method": "email", "minutes": 40321}]}), "invalid", None),
    (timed(attendees=[{"displayName": "No address"}]), "required", "Missing attendee email."),
])
def test_invalid_events_are_refused_with_googles_reason(sandbox, ann, body, reason, message):
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().insert(calendarId="primary", body=body).execute()
    assert raised.value.status_code == 400
    assert reason_of(raised.value) == reason
    if message:
        assert raised.value.reason == message


def test_valid_reminders_and_extended_property_limits(sandbox, ann):
    reminders = {"useDefault": False, "overrides": [{"method": "popup", "minutes": 10},
                                                    {"method": "email", "minutes": 40320}]}
    long_key, long_value = "k" * 45, "v" * 2000
    event = ann.calendar.events().insert(calendarId="primary", body=timed(
        reminders=reminders, extendedProperties={"private": {long_key: "dropped", "crmId": long_value}})).execute()
    assert event["reminders"] == reminders
    assert event["extendedProperties"]["private"] == {"crmId": "v" * 1024}


def test_send_updates_of_each_write_is_visible_to_tests(sandbox, ann):
    events = ann.calendar.events()
    event = events.insert(calendarId="primary", body=timed(), sendUpdates="none").execute()
    events.patch(calendarId="primary", eventId=event["id"], body={"summary": "x"}, sendUpdates="all").execute()
    events.delete(calendarId="primary", eventId=event["id"]).execute()
    log = httpx.get(f"{sandbox.http_url}/_sandbox/google/accounts/{ann.id}/sent-updates").json()
    assert [(e["method"], e["sendUpdates"]) for e in log] == [
        ("events.insert", "none"), ("events.patch", "all"), ("events.delete", None)]


@pytest.mark.parametrize("rule, status", [({"rate_429": 1.0, "google_403_rate_limit": True}, 403),
                                          ({"rate_429": 1.0}, 429)])
def test_quota_errors_surface_as_http_errors_with_the_reason(sandbox, ann, rule, status):
    ann.calendar.calendarList().list().execute()  # refresh the token before quota runs out
    fault = {"method": "POST", "route": "/calendar/v3/calendars/*/events", **rule}
    assert httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=fault).status_code == 201
    with pytest.raises(HttpError) as raised:
        ann.calendar.events().insert(calendarId="primary", body=timed()).execute()
    assert raised.value.status_code == status and reason_of(raised.value) == "rateLimitExceeded"
    assert raised.value.resp["retry-after"] == "1"
