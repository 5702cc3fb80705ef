"""Google Calendar <-> CRM events, end to end: the reference CRM, ingest, the worker, the sandbox.

The tests marked `faults` run twice: as they are, and with the sandbox answering 20% of provider calls
with 429s and 5xx (the worker retries; nothing is dropped or duplicated).
"""
import httpx
import pytest

from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

EVENT = {"Event_Title": "Pipeline review", "Start_DateTime": "2030-03-04T10:00:00+01:00",
         "End_DateTime": "2030-03-04T11:00:00+01:00", "Time_Zone": "Europe/Berlin", "Venue": "Room 1",
         "Reminders": [{"minutes": 10, "method": "popup"}, {"minutes": 60, "method": "popup"}]}
RETRIES = 8


@pytest.fixture(params=["clean", "faulty"])
def stack(request, calendar_stack):
    """The stack as it is, then again with 20% of provider calls throttled or failing."""
    if request.param == "faulty":
        calendar_stack.inject_faults(0.2)
    return calendar_stack


def connected(stack, user: str = "ann", **config):
    org = unique_org()
    person = stack.connect_google(org, user, f"{user}.{org}@example.com")
    stack.configure(org, user, "google_calendar", **({"direction": "two_way"} | config))
    stack.wait_synced(org, user, "google_calendar")
    return org, person


def crm_record(stack, org: str, record_id: str) -> dict | None:
    return next((r for r in stack.crm.records(org) if r["id"] == record_id), None)


def one_google_event(stack, person) -> dict:
    return wait_for(lambda: (lambda items: items[0] if len(items) == 1 else None)(person.events()), 45,
                    what=f"one event in Google; worker log:\n{stack.worker_log()}")


def test_crm_event_goes_to_google_at_once_and_google_edits_come_back(stack):
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_google_event(stack, ann)
    assert event["summary"] == "Pipeline review"
    assert sorted(o["minutes"] for o in event["reminders"]["overrides"]) == [10, 60], "every popup reminder"
    assert event["start"] == {"dateTime": "2030-03-04T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert event["extendedProperties"]["private"]["crmsync_record_id"] == record["id"]

    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"location": "Room 2"}).execute(
        num_retries=RETRIES)
    wait_for(lambda: crm_record(stack, org, record["id"])["fields"]["Venue"] == "Room 2", 45,
             what=f"the Google edit in the CRM; {stack.worker_log()}")
    assert len(stack.crm.records(org)) == 1 and len(ann.events()) == 1, "no duplicate on either side"


def test_google_event_arrives_in_the_crm_and_untitled_is_not_specified(stack):
    org, ann = connected(stack)
    ann.calendar.events().insert(calendarId="primary", body={
        "start": {"date": "2030-05-01"}, "end": {"date": "2030-05-02"}}).execute(num_retries=RETRIES)
    [record] = wait_for(lambda: stack.crm.records(org), 45, what=f"event in the CRM; {stack.worker_log()}")
    fields = record["fields"]
    assert fields["Event_Title"] == "Not specified"
    assert fields["All_day"] is True
    assert (fields["Start_DateTime"], fields["End_DateTime"]) == ("2030-05-01", "2030-05-01"), "never a day off"
    assert record["owner_id"] == "ann"


def test_deletes_go_both_ways(stack):
    org, ann = connected(stack)
    first = stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    stack.crm.delete(org, "Events", first["id"])
    wait_for(lambda: ann.events() == [], 45, what=f"the CRM delete in Google; {stack.worker_log()}")

    ann.calendar.events().insert(calendarId="primary", body={
        "summary": "From Google", "start": {"dateTime": "2030-06-01T09:00:00Z"},
        "end": {"dateTime": "2030-06-01T10:00:00Z"}}).execute(num_retries=RETRIES)
    [record] = wait_for(lambda: stack.crm.records(org), 45, what="the Google event in the CRM")
    [event] = ann.events()
    ann.calendar.events().delete(calendarId="primary", eventId=event["id"]).execute(num_retries=RETRIES)
    wait_for(lambda: stack.crm.records(org) == [], 45, what=f"the Google delete in the CRM; {stack.worker_log()}")


def test_imported_and_migrated_events_are_not_synced_but_bulk_updated_ones_are(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    imported = stack.crm.create_event(org, "ann", source="import", **(EVENT | {"Event_Title": "Imported"}))
    stack.crm.create_event(org, "ann", source="migration", **(EVENT | {"Event_Title": "Migrated"}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Typed in"}))
    event = one_google_event(stack, ann)
    assert event["summary"] == "Typed in"

    r = stack.crm.http.post(f"/v1/orgs/{org}/modules/Events/bulk-update",
                            json={"record_ids": [imported["id"]], "fields": {"Venue": "Hall"}})
    assert r.status_code == 200, r.text
    wait_for(lambda: sorted(e["summary"] for e in ann.events()) == ["Imported", "Typed in"], 45,
             what=f"the bulk-updated event in Google; {stack.worker_log()}")
    assert "Migrated" not in {e["summary"] for e in ann.events()}


def test_a_sync_never_mails_attendees(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    guests = [{"type": "email", "Email": f"guest{i}@customer.com", "name": f"Guest {i}"} for i in range(3)]
    record = stack.crm.create_event(org, "ann", **(EVENT | {"Participants": guests}))
    event = one_google_event(stack, ann)
    assert sorted(a["email"] for a in event["attendees"]) == [g["Email"] for g in guests]
    stack.crm.update(org, "Events", record["id"], Event_Title="Moved")
    wait_for(lambda: ann.events()[0]["summary"] == "Moved", 45, what="the update in Google")
    sent = stack.sent_updates(ann.account)
    assert len(sent) >= 2 and {entry["sendUpdates"] for entry in sent} == {"none"}, sent


def test_guests_of_google_events_become_crm_contacts_once_each(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack, guests_as_contacts=True)
    for title in ("First", "Second"):
        ann.calendar.events().insert(calendarId="primary", body={
            "summary": title, "start": {"dateTime": "2030-06-01T09:00:00Z"}, "end": {"dateTime": "2030-06-01T10:00:00Z"},
            "attendees": [{"email": "Bob@Customer.com", "displayName": "Bob"}, {"email": "bob@customer.com"},
                          {"email": ann.account["email"]}]}).execute(num_retries=RETRIES)
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"both events in the CRM; {stack.worker_log()}")
    [contact] = wait_for(lambda: stack.crm.records(org, "Contacts"), 30, what="the guest as a contact")
    assert contact["fields"]["Email"] == "bob@customer.com"
    assert len(stack.crm.records(org, "Contacts")) == 1, "once, matched case-insensitively, never the user"


def test_disabling_google_stops_the_channel_and_leaves_both_sides(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    def ours() -> list[dict]:
        return [c for c in stack.channels() if c["calendar"] == ann.account["email"].lower()]

    assert [c["state"] for c in ours()] == ["live"]
    stack.configure(org, "ann", "google_calendar", enabled=False)

    def stopped() -> bool:
        return [c["state"] for c in ours()] == ["stopped"]

    wait_for(stopped, 45, what=f"the channel stopped; channels {stack.channels()}; {stack.worker_log()}")
    assert len(ann.events()) == 1 and len(stack.crm.records(org)) == 1, "both sides as they were"


def test_reenabling_after_deleting_the_configuration_duplicates_nothing(stack):
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **EVENT)
    ann.calendar.events().insert(calendarId="primary", body={
        "summary": "From Google", "start": {"dateTime": "2030-06-01T09:00:00Z"},
        "end": {"dateTime": "2030-06-01T10:00:00Z"}}).execute(num_retries=RETRIES)
    wait_for(lambda: len(ann.events()) == 2 and len(stack.crm.records(org)) == 2, 45,
             what=f"both events on both sides; {stack.worker_log()}")
    stack.remove(org, "ann", "google_calendar")
    stack.configure(org, "ann", "google_calendar", direction="two_way")
    stack.wait_synced(org, "ann", "google_calendar")
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "After"}))  # a sentinel behind the resync
    wait_for(lambda: len(ann.events()) == 3, 45, what="the sentinel in Google")
    assert sorted(e["summary"] for e in ann.events()) == ["After", "From Google", "Pipeline review"]
    assert len(stack.crm.records(org)) == 3


def test_a_lost_sync_token_means_a_full_resync_without_duplicates(stack):
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    httpx.post(f"{stack.sandbox.http_url}/_sandbox/google/accounts/{ann.account['id']}/invalidate-sync-tokens")
    ann.calendar.events().insert(calendarId="primary", body={
        "summary": "After the 410", "start": {"dateTime": "2030-06-01T09:00:00Z"},
        "end": {"dateTime": "2030-06-01T10:00:00Z"}}).execute(num_retries=RETRIES)
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"the new event after a resync; {stack.worker_log()}")
    assert len(ann.events()) == 2


def test_our_own_writes_coming_back_are_dropped(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    stack.crm.update(org, "Events", record["id"], Event_Title="Second")
    wait_for(lambda: ann.events()[0]["summary"] == "Second", 45, what="the update in Google")
    ann.calendar.events().patch(calendarId="primary", eventId=ann.events()[0]["id"],
                                body={"description": "sentinel"}).execute(num_retries=RETRIES)
    wait_for(lambda: crm_record(stack, org, record["id"])["fields"]["Description"] == "sentinel", 45,
             what="the sentinel in the CRM")
    event = ann.events()[0]
    # One insert and one update went out; the sentinel's own echo came back to Google as no write at all.
    assert event["sequence"] <= 2, f"ping-pong: Google saw {event['sequence']} revisions"
    assert crm_record(stack, org, record["id"])["fields"]["Event_Title"] == "Second"


def test_edits_to_different_fields_on_both_sides_are_all_kept(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_google_event(stack, ann)
    with stack.worker_stopped():
        ann.calendar.events().patch(calendarId="primary", eventId=event["id"],
                                    body={"location": "Google room"}).execute(num_retries=RETRIES)
        stack.crm.update(org, "Events", record["id"], Event_Title="CRM title")

    def merged() -> bool:
        fields = crm_record(stack, org, record["id"])["fields"]
        [google] = ann.events()
        return (fields["Event_Title"], fields["Venue"], google["summary"], google.get("location")) == (
            "CRM title", "Google room", "CRM title", "Google room")

    wait_for(merged, 60, what=f"both edits on both sides; {stack.worker_log()}")


def test_preview_counts_what_enabling_would_do_without_writing(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_google(org, "ann", f"ann.{org}@example.com")
    stack.crm.create_event(org, "ann", **EVENT)
    ann.calendar.events().insert(calendarId="primary", body={
        "summary": "Only in Google", "start": {"dateTime": "2030-06-01T09:00:00Z"},
        "end": {"dateTime": "2030-06-01T10:00:00Z"}}).execute(num_retries=RETRIES)
    stack.configure(org, "ann", "google_calendar", enabled=False)
    def counted() -> dict | None:
        answer = stack.admin("POST", f"/v1/orgs/{org}/users/ann/integrations/google_calendar/preview")
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["create_in_provider"] == 1 else None  # once the CRM event is indexed

    preview = wait_for(counted, 60, what=f"a preview with the CRM event; {stack.worker_log()}")
    assert preview["create_in_crm"] == 1 and preview["link"] == 0 and preview["enabled"] is False, preview
    assert len(ann.events()) == 1 and len(stack.crm.records(org)) == 1, "a preview writes nothing"
