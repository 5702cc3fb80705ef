"""What a pull writes back to the CRM, end to end: only the fields the provider changed. The worker's
index of the CRM may lag behind the CRM (a CRM edit still on its way through crm.changes); a writeback
that carried every field would put the index's old values over that edit. The commands on crm.commands
show what was sent.
"""
import pytest

from schemas import CrmCommand, UpsertRecord
from tests.e2e import test_calendar_google as google
from tests.e2e import test_calendar_microsoft as microsoft
from tests.fixtures.net import wait_for
from tests.fixtures.topics import read_topic

pytestmark = pytest.mark.integration


def updates_of(bootstrap: str, org: str, record_id: str) -> list[dict]:
    """The fields of each update the worker sent for the record, oldest first; the meeting's iCalendar
    UID, which the CRM learns from the provider with the first writeback, left out."""
    commands = map(CrmCommand.from_bytes, (r.value for r in read_topic(bootstrap, "crm.commands")))
    return [{k: v for k, v in c.action.fields.items() if k != "ICal_UID"} for c in commands
            if c.org_id == org and isinstance(c.action, UpsertRecord) and c.action.record_id == record_id]


def test_a_google_edit_writes_back_only_what_google_changed(calendar_stack, kafka_bootstrap):
    stack = calendar_stack
    org, ann = google.connected(stack)
    record = stack.crm.create_event(org, "ann", **(google.EVENT | {"Description": "CRM notes"}))
    event = google.one_google_event(stack, ann)
    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "Google title"}).execute(
        num_retries=google.RETRIES)
    wait_for(lambda: google.crm_record(stack, org, record["id"])["fields"]["Event_Title"] == "Google title", 45,
             what=f"the Google title in the CRM; {stack.worker_log()}")
    assert updates_of(kafka_bootstrap, org, record["id"]) == [{"Event_Title": "Google title"}]

    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={
        "start": {"dateTime": "2030-03-04T12:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2030-03-04T13:00:00+01:00", "timeZone": "Europe/Berlin"}}).execute(
        num_retries=google.RETRIES)
    wait_for(lambda: google.crm_record(stack, org, record["id"])["fields"]["Start_DateTime"].startswith(
        "2030-03-04T12:00"), 45, what="the new time in the CRM")
    assert updates_of(kafka_bootstrap, org, record["id"])[-1] == {
        "All_day": False, "Start_DateTime": "2030-03-04T12:00:00+01:00", "End_DateTime": "2030-03-04T13:00:00+01:00",
        "Time_Zone": "Europe/Berlin"}, "a time range goes whole, and nothing else"
    fields = google.crm_record(stack, org, record["id"])["fields"]
    assert (fields["Description"], fields["Venue"]) == ("CRM notes", "Room 1")


def test_an_outlook_edit_writes_back_only_what_outlook_changed(calendar_stack, kafka_bootstrap):
    stack = calendar_stack
    org, ann = microsoft.connected(stack)
    record = stack.crm.create_event(org, "ann", **microsoft.EVENT)
    event = microsoft.one_outlook_event(stack, ann)
    ann.patch(event["id"], {"location": {"displayName": "Outlook room"}})
    wait_for(lambda: google.crm_record(stack, org, record["id"])["fields"]["Venue"] == "Outlook room", 45,
             what=f"the Outlook edit in the CRM; {stack.worker_log()}")
    assert updates_of(kafka_bootstrap, org, record["id"]) == [{"Venue": "Outlook room"}]
