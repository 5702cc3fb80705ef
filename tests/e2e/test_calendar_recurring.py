"""Exceptions of a recurring series, Google, end to end: an occurrence cancelled in Google becomes an
EXDATE of the CRM's series; an occurrence modified in Google becomes its own CRM event tied to the series
(Series_Id, Original_Start), and later CRM edits of it reach that occurrence, not the series.
"""
import datetime as dt

import pytest

from tests.e2e import test_calendar_google as google
from tests.e2e.test_calendar_microsoft import BERLIN
from tests.e2e.test_calendar_microsoft_robustness import next_monday
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

SERIES = google.EVENT | {"Event_Title": "Weekly review", "Recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"]}


def test_google_exceptions_of_a_series_reach_the_crm_and_back(calendar_stack):
    stack = calendar_stack
    org, ann = google.connected(stack)
    series = stack.crm.create_event(org, "ann", **SERIES)
    master = google.one_google_event(stack, ann)
    assert master["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4"]
    instances = ann.calendar.events().instances(calendarId="primary", eventId=master["id"]).execute(
        num_retries=google.RETRIES)["items"]
    assert len(instances) == 4

    ann.calendar.events().delete(calendarId="primary", eventId=instances[1]["id"]).execute(num_retries=google.RETRIES)
    wait_for(lambda: "EXDATE:20300311T090000Z" in google.crm_record(stack, org, series["id"])["fields"]["Recurrence"],
             45, what=f"the cancelled occurrence in the CRM's series; {stack.worker_log()}")

    ann.calendar.events().patch(calendarId="primary", eventId=instances[2]["id"],
                                body={"summary": "Review, moved"}).execute(num_retries=google.RETRIES)
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"the modified occurrence in the CRM; {stack.worker_log()}")
    [exception] = [r for r in stack.crm.records(org) if r["id"] != series["id"]]
    assert exception["fields"]["Event_Title"] == "Review, moved"
    assert exception["fields"]["Series_Id"] == series["id"]
    assert exception["fields"]["Original_Start"] == "2030-03-18T10:00:00+01:00"
    assert google.crm_record(stack, org, series["id"])["fields"]["Event_Title"] == "Weekly review", "series untouched"

    stack.crm.update(org, "Events", exception["id"], Event_Title="Review, moved again")
    occurrence = lambda: ann.calendar.events().get(calendarId="primary", eventId=instances[2]["id"]).execute(  # noqa: E731
        num_retries=google.RETRIES)
    wait_for(lambda: occurrence()["summary"] == "Review, moved again", 45,
             what=f"the CRM edit on the occurrence; {stack.worker_log()}")
    remaining = ann.calendar.events().instances(calendarId="primary", eventId=master["id"]).execute(
        num_retries=google.RETRIES)["items"]
    assert [i["summary"] for i in remaining] == ["Weekly review", "Review, moved again", "Weekly review"]


def test_crm_exceptions_of_a_series_reach_google_as_its_occurrences(calendar_stack):
    stack = calendar_stack
    org, ann = google.connected(stack)
    series = stack.crm.create_event(org, "ann", **SERIES)
    master = google.one_google_event(stack, ann)

    def occurrences() -> list[dict]:
        return ann.calendar.events().instances(calendarId="primary", eventId=master["id"]).execute(
            num_retries=google.RETRIES)["items"]

    stack.crm.update(org, "Events", series["id"], Recurrence=["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20300311T090000Z"])
    wait_for(lambda: len(occurrences()) == 3, 45, what=f"the excluded date gone from Google; {stack.worker_log()}")
    assert "2030-03-11" not in {o["start"]["dateTime"][:10] for o in occurrences()}

    moved = stack.crm.create_event(org, "ann", **(google.EVENT | {
        "Event_Title": "Review, in the big room", "Venue": "Big room", "Series_Id": series["id"],
        "Original_Start": "2030-03-18T10:00:00+01:00", "Start_DateTime": "2030-03-18T14:00:00+01:00",
        "End_DateTime": "2030-03-18T15:00:00+01:00"}))
    wait_for(lambda: [o["summary"] for o in occurrences()] == ["Weekly review", "Review, in the big room",
                                                               "Weekly review"], 45,
             what=f"the CRM's exception on its occurrence; {stack.worker_log()}")
    [exception] = [o for o in occurrences() if o["summary"] == "Review, in the big room"]
    assert exception["start"]["dateTime"] == "2030-03-18T14:00:00+01:00" and exception["location"] == "Big room"
    assert exception["recurringEventId"] == master["id"]
    assert len(ann.events()) == 2, "the series and its exception: no stand-alone copy"
    assert google.crm_record(stack, org, moved["id"])["fields"]["Event_Title"] == "Review, in the big room"
    assert len(stack.crm.records(org)) == 2, "the exception's own echo made no third CRM event"


def test_a_first_sync_writes_a_crm_exception_over_its_occurrence(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_google(org, "ann", f"ann.{org}@example.com")
    series = stack.crm.create_event(org, "ann", **SERIES)
    stack.crm.create_event(org, "ann", **(google.EVENT | {
        "Event_Title": "Review, later", "Series_Id": series["id"], "Original_Start": "2030-03-11T10:00:00+01:00",
        "Start_DateTime": "2030-03-11T16:00:00+01:00", "End_DateTime": "2030-03-11T17:00:00+01:00"}))
    stack.configure(org, "ann", "google_calendar", enabled=False)
    wait_for(lambda: stack.admin("POST", f"/v1/orgs/{org}/users/ann/integrations/google_calendar/preview")
             .json().get("create_in_provider", 0) >= 1, 60, what=f"the CRM events indexed; {stack.worker_log()}")
    stack.configure(org, "ann", "google_calendar", direction="two_way")
    stack.wait_synced(org, "ann", "google_calendar")
    [master] = [e for e in ann.events() if e.get("recurrence")]
    occurrences = ann.calendar.events().instances(calendarId="primary", eventId=master["id"]).execute(
        num_retries=google.RETRIES)["items"]
    assert [o["summary"] for o in occurrences] == ["Weekly review", "Review, later", "Weekly review", "Weekly review"]
    assert len(ann.events()) == 2, "the exception is the series' occurrence, not an event of its own"


def test_a_first_sync_brings_a_series_with_its_cancelled_and_edited_occurrences(calendar_stack):
    """The twin of the Microsoft test: a series cancelled and edited in Google before the first sync. Its
    occurrences reach the engine while the series' CRM record is still being created; they wait for its
    id, then the EXDATE joins the series and the exception is tied to it (not created with no Series_Id)."""
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_google(org, "ann", f"ann.{org}@example.com")
    first = dt.datetime.combine(next_monday(14), dt.time(10), BERLIN)
    master = ann.calendar.events().insert(calendarId="primary", body={
        "summary": "Weekly review", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
        "start": {"dateTime": first.isoformat(), "timeZone": "Europe/Berlin"},
        "end": {"dateTime": (first + dt.timedelta(hours=1)).isoformat(), "timeZone": "Europe/Berlin"},
    }).execute(num_retries=google.RETRIES)
    instances = ann.calendar.events().instances(calendarId="primary", eventId=master["id"]).execute(
        num_retries=google.RETRIES)["items"]
    assert len(instances) == 4
    ann.calendar.events().delete(calendarId="primary", eventId=instances[1]["id"]).execute(num_retries=google.RETRIES)
    ann.calendar.events().patch(calendarId="primary", eventId=instances[2]["id"],
                                body={"summary": "Review, moved"}).execute(num_retries=google.RETRIES)
    stack.configure(org, "ann", "google_calendar", direction="two_way")
    stack.wait_synced(org, "ann", "google_calendar")

    def series() -> dict | None:
        return next((r for r in stack.crm.records(org) if r["fields"].get("Recurrence")), None)

    record = wait_for(series, 45, what=f"the series in the CRM; {stack.worker_log()}")
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"the exception in the CRM; {stack.worker_log()}")
    [exception] = [r for r in stack.crm.records(org) if r["id"] != record["id"]]
    assert exception["fields"]["Event_Title"] == "Review, moved"
    assert exception["fields"]["Series_Id"] == record["id"]
    cancelled = f"EXDATE:{(first + dt.timedelta(weeks=1)).astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    wait_for(lambda: cancelled in google.crm_record(stack, org, record["id"])["fields"]["Recurrence"], 45,
             what=f"the cancelled occurrence as an EXDATE of the CRM's series; {stack.worker_log()}")
    assert len(stack.crm.records(org)) == 2, "the series and its exception: nothing created twice"
