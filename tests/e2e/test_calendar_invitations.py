"""Invitations, end to end: a sync never mails attendees by itself; a participant list a CRM user changed
may, when the org's calendar setting says so (off by default). Google: sendUpdates of each write, as the
sandbox records it. Outlook: attendees are what invites, so they are written only then; an invitee in
the tenant gets the meeting in their own calendar, as Exchange delivers it.
"""
import httpx
import pytest

from tests.e2e import test_calendar_google as google
from tests.e2e import test_calendar_microsoft as microsoft
from tests.fixtures.net import wait_for

pytestmark = pytest.mark.integration

GUESTS = [{"type": "email", "Email": "guest1@customer.com", "name": "Guest 1"},
          {"type": "email", "Email": "guest2@customer.com", "name": "Guest 2"}]


def notify_participants(stack, org: str, on: bool) -> dict:
    answer = stack.admin("PUT", f"/v1/orgs/{org}/calendar-settings", json={"notify_participants_on_change": on})
    assert answer.status_code == 200, answer.text
    return answer.json()


def sent(stack, person) -> list[str]:
    return [entry["sendUpdates"] for entry in stack.sent_updates(person.account)]


def test_the_org_setting_is_off_by_default_and_set_by_an_admin_only(calendar_stack):
    stack = calendar_stack
    org = google.connected(stack)[0]
    path = f"/v1/orgs/{org}/calendar-settings"
    assert stack.admin("GET", path).json() == {"org_id": org, "notify_participants_on_change": False}
    assert notify_participants(stack, org, True) == {"org_id": org, "notify_participants_on_change": True}
    assert stack.admin("GET", path).json()["notify_participants_on_change"] is True
    bad = stack.admin("PUT", path, json={"notify_participants_on_change": "sometimes"})
    assert bad.status_code == 422 and "notify_participants_on_change" in bad.text
    assert stack.admin("PUT", path, json={"notify": True}).status_code == 422, "unknown fields are refused"
    anonymous = httpx.put(f"{stack.ingest_url}{path}", json={"notify_participants_on_change": False})
    assert anonymous.status_code == 401
    assert stack.admin("GET", path).json()["notify_participants_on_change"] is True, "a refused PUT changes nothing"


def test_google_is_mailed_only_for_participant_changes_in_an_org_that_allows_it(calendar_stack):
    stack = calendar_stack
    org, ann = google.connected(stack)
    quiet = stack.crm.create_event(org, "ann", **(google.EVENT | {"Participants": GUESTS[:1]}))
    google.one_google_event(stack, ann)
    stack.crm.update(org, "Events", quiet["id"], Participants=GUESTS)
    wait_for(lambda: len(ann.events()[0].get("attendees", [])) == 2, 45, what="the new guest in Google")
    assert set(sent(stack, ann)) == {"none"}, "the setting is off: nobody is mailed"

    notify_participants(stack, org, True)
    stack.crm.update(org, "Events", quiet["id"], Participants=GUESTS[:1])  # the user drops a guest
    wait_for(lambda: len(ann.events()[0].get("attendees", [])) == 1, 45, what="the guest dropped in Google")
    assert sent(stack, ann)[-1] == "all"
    stack.crm.update(org, "Events", quiet["id"], Event_Title="Retitled")  # not the participants
    wait_for(lambda: ann.events()[0]["summary"] == "Retitled", 45, what="the title in Google")
    assert sent(stack, ann)[-1] == "none"
    event = ann.events()[0]
    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"location": "Google room"},
                                sendUpdates="none").execute(num_retries=google.RETRIES)
    wait_for(lambda: google.crm_record(stack, org, quiet["id"])["fields"]["Venue"] == "Google room", 45,
             what="the Google edit in the CRM")
    ours = [entry for entry in stack.sent_updates(ann.account)]
    assert [e["sendUpdates"] for e in ours].count("all") == 1, f"only the participant change mailed: {ours}"


def test_outlook_gets_the_participants_only_when_inviting_them_is_allowed(calendar_stack):
    stack = calendar_stack
    org, ann = microsoft.connected(stack)
    bob = stack.connect_microsoft(org, "bob", f"bob.{org}@example.com")  # a colleague in the tenant
    colleague = [{"type": "user", "Email": bob.account["email"], "name": "Bob"}]
    quiet = stack.crm.create_event(org, "ann", **(microsoft.EVENT | {"Participants": colleague}))
    event = microsoft.one_outlook_event(stack, ann)
    assert event.get("attendees", []) == [] and bob.events() == [], "no attendee written: nobody invited"

    notify_participants(stack, org, True)
    invited = stack.crm.create_event(org, "ann", **(microsoft.EVENT | {"Event_Title": "Invited",
                                                                       "Participants": colleague}))
    wait_for(lambda: [e["subject"] for e in bob.events()] == ["Invited"], 45,
             what=f"the invitation in Bob's calendar; {stack.worker_log()}")
    stack.crm.update(org, "Events", quiet["id"], Event_Title="Still quiet")  # no participant change
    wait_for(lambda: "Still quiet" in microsoft.subjects(ann), 45, what="the retitle in Outlook")
    assert [e["subject"] for e in bob.events()] == ["Invited"], "a change to other fields invites nobody"
    [mine] = [e for e in ann.events() if e["subject"] == "Invited"]
    assert [a["emailAddress"]["address"] for a in mine["attendees"]] == [bob.account["email"]]
    assert len(stack.crm.records(org)) == 2, "Bob's copy of Ann's meeting stays out of the CRM"


def test_an_outlook_edit_keeps_the_participants_only_the_crm_holds(calendar_stack):
    stack = calendar_stack
    org, ann = microsoft.connected(stack)
    record = stack.crm.create_event(org, "ann", **(microsoft.EVENT | {"Participants": GUESTS}))
    event = microsoft.one_outlook_event(stack, ann)
    assert event.get("attendees", []) == [], "not invited: the participants stay in the CRM"
    ann.patch(event["id"], {"location": {"displayName": "Outlook room"}})
    wait_for(lambda: google.crm_record(stack, org, record["id"])["fields"]["Venue"] == "Outlook room", 45,
             what=f"the Outlook edit in the CRM; {stack.worker_log()}")
    participants = google.crm_record(stack, org, record["id"])["fields"]["Participants"]
    assert [p["Email"] for p in participants] == [g["Email"] for g in GUESTS], "Outlook's empty list is no deletion"
