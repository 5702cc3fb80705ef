"""Google Calendar <-> CRM events, end to end: the reference CRM, ingest, the worker, the sandbox."""
import pytest

from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

EVENT = {"Event_Title": "Pipeline review", "Start_DateTime": "2030-03-04T10:00:00+01:00",
         "End_DateTime": "2030-03-04T11:00:00+01:00", "Time_Zone": "Europe/Berlin", "Venue": "Room 1",
         "Reminders": [{"minutes": 10, "method": "popup"}, {"minutes": 60, "method": "popup"}]}


def test_crm_event_goes_to_google_at_once_and_google_edits_come_back(calendar_stack):
    org = unique_org()
    ann = calendar_stack.connect_google(org, "ann", "ann@example.com")
    calendar_stack.configure(org, "ann", "google_calendar", direction="two_way")
    calendar_stack.wait_synced(org, "ann", "google_calendar")

    record = calendar_stack.crm.create_event(org, "ann", **EVENT)
    [event] = wait_for(lambda: ann.events(), 30, what=f"event in Google; {calendar_stack.worker_log()}")
    assert event["summary"] == "Pipeline review"
    assert sorted(o["minutes"] for o in event["reminders"]["overrides"]) == [10, 60]
    assert event["start"]["timeZone"] == "Europe/Berlin"

    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"location": "Room 2"}).execute()

    def crm_venue():
        [crm_event] = [r for r in calendar_stack.crm.records(org) if r["id"] == record["id"]]
        return crm_event["fields"]["Venue"] == "Room 2"

    wait_for(crm_venue, 30, what=f"Google edit in the CRM; {calendar_stack.worker_log()}")
    assert len(calendar_stack.crm.records(org)) == 1, "no duplicate in the CRM"
    assert len(ann.events()) == 1, "no duplicate in Google"
