"""Which Outlook calendar, and in which zone, end to end: the configured target calendar is the one
written and tracked (a calendar the user cannot edit is refused with the status invalid_target), and an
all-day event is written midnight to midnight in the mailbox's own time zone, so Outlook shows it on its
day, never across two.
"""
import datetime as dt

import httpx
import pytest

from tests.e2e import test_calendar_microsoft as microsoft
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

INTEGRATION = microsoft.INTEGRATION
CALENDAR_CREATES = "POST /v1.0/users/{user_id}/calendars/{calendar_id}/events"


def outlook_calendars(person) -> dict[str, dict]:
    """The person's calendars by name."""
    return {c["name"]: c for c in person._call("GET", "/calendars").json()["value"]}


def test_the_target_calendar_is_the_one_written_and_tracked(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    target = outlook_calendars(ann)["Calendar"]
    assert target["canEdit"] and target["isDefaultCalendar"]
    creates = stack.calls().get(CALENDAR_CREATES, 0)
    stack.configure(org, "ann", INTEGRATION, direction="two_way", target_id=target["id"])
    stack.wait_synced(org, "ann", INTEGRATION)
    record = stack.crm.create_event(org, "ann", **microsoft.EVENT)
    event = microsoft.one_outlook_event(stack, ann)
    assert stack.calls().get(CALENDAR_CREATES, 0) == creates + 1, "created through the target calendar"

    ann.patch(event["id"], {"location": {"displayName": "Room 2"}})
    wait_for(lambda: microsoft.crm_record(stack, org, record["id"])["fields"]["Venue"] == "Room 2", 45,
             what=f"the Outlook edit through the target's delta; {stack.worker_log()}")
    assert len(ann.events()) == 1 and len(stack.crm.records(org)) == 1


def test_a_calendar_the_user_cannot_edit_is_refused_as_invalid_target(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    holidays = outlook_calendars(ann)["United States holidays"]
    assert holidays["canEdit"] is False
    stack.configure(org, "ann", INTEGRATION, direction="two_way", target_id=holidays["id"])
    status = wait_for(lambda: (lambda s: s if (s or {}).get("state") == "invalid_target" else None)(
        stack.status(org, "ann", INTEGRATION)), 45, what=f"status invalid_target; {stack.worker_log()}")
    assert holidays["id"] in status["reason"]
    stack.crm.create_event(org, "ann", **microsoft.EVENT)
    stack.configure(org, "ann", INTEGRATION, direction="two_way")  # the default calendar: accepted
    stack.wait_synced(org, "ann", INTEGRATION)
    microsoft.one_outlook_event(stack, ann)


def test_an_all_day_event_is_written_in_the_mailboxs_time_zone_and_comes_back_on_its_day(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    ann._call("PATCH", "/mailboxSettings", json={"timeZone": "Pacific Standard Time"})
    stack.configure(org, "ann", INTEGRATION, direction="two_way")
    stack.wait_synced(org, "ann", INTEGRATION)
    first = dt.date.today() + dt.timedelta(days=10)
    record = stack.crm.create_event(org, "ann", Event_Title="Offsite", All_day=True,
                                    Start_DateTime=first.isoformat(), End_DateTime=first.isoformat())
    event = microsoft.one_outlook_event(stack, ann)
    assert event["isAllDay"] and event["originalStartTimeZone"] == "Pacific Standard Time", event
    read = httpx.get(f"{ann.graph_url}/v1.0/users/{ann.account['id']}/events/{event['id']}", timeout=30,
                     headers={"Authorization": f"Bearer {ann.token}",
                              "Prefer": 'outlook.timezone="Pacific Standard Time"'})
    read.raise_for_status()
    start, end = read.json()["start"], read.json()["end"]
    assert start["dateTime"].startswith(f"{first.isoformat()}T00:00:00"), "midnight in the mailbox's zone"
    assert end["dateTime"].startswith(f"{(first + dt.timedelta(days=1)).isoformat()}T00:00:00")

    ann.patch(event["id"], {"subject": "Offsite, renamed"})
    wait_for(lambda: microsoft.crm_record(stack, org, record["id"])["fields"]["Event_Title"] == "Offsite, renamed",
             45, what=f"the Outlook edit in the CRM; {stack.worker_log()}")
    fields = microsoft.crm_record(stack, org, record["id"])["fields"]
    assert (fields["Start_DateTime"], fields["End_DateTime"]) == (first.isoformat(), first.isoformat()), "no day off"
