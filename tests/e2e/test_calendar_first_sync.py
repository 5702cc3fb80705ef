"""First syncs of calendars that already hold events, provider -> CRM: the worker takes them a page at a
time (whole_calendar.py), and the outcome must be what one event at a time gave: each event in the CRM
once, a meeting on several users' calendars one CRM event with each of them."""
import httpx
import pytest

from tests.e2e.test_calendar_google import stack  # noqa: F401 - the clean and the faulty stack
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

PAGE = 25  # events a first sync takes per page here, so that a few dozen span several pages


def seed(sandbox_url: str, person, body: dict) -> None:
    """An event put in the user's calendar by someone else (the sandbox's control API)."""
    httpx.post(f"{sandbox_url}/_sandbox/google/accounts/{person.account['id']}/calendars/primary/events",
               json=body).raise_for_status()


def timed(title: str, day: int, **extra) -> dict:
    return {"summary": title, "start": {"dateTime": f"2030-06-{day:02d}T09:00:00Z"},
            "end": {"dateTime": f"2030-06-{day:02d}T10:00:00Z"}, **extra}


def test_a_first_sync_over_several_pages_creates_each_event_once(stack):  # noqa: F811
    org = unique_org()
    ann = stack.connect_google(org, "ann", f"ann.{org}@example.com")
    titles = [f"Seeded {n}" for n in range(3 * PAGE + 7)]
    for n, title in enumerate(titles):
        seed(stack.sandbox.http_url, ann, timed(title, 1 + n % 28))

    stack.configure(org, "ann", "google_calendar", direction="two_way", caps={"incremental_page_cap": PAGE})
    stack.wait_synced(org, "ann", "google_calendar", timeout_s=120)

    def all_there():
        records = stack.crm.records(org)
        return records if len(records) >= len(titles) else None

    records = wait_for(all_there, 60, what=f"{len(titles)} CRM events; worker log:\n{stack.worker_log()}")
    assert sorted(r["fields"]["Event_Title"] for r in records) == sorted(titles)
    assert all(r["owner_id"] == "ann" for r in records)


def test_a_meeting_on_two_calendars_before_enabling_is_one_crm_event_with_both(calendar_stack):
    org = unique_org()
    people = {user: calendar_stack.connect_google(org, user, f"{user}.{org}@example.com") for user in ("ann", "bob")}
    attendees = [{"email": people["ann"].account["email"]}, {"email": people["bob"].account["email"]}]
    meeting = timed("Kick-off", 2, iCalUID=f"kickoff-{org}@example.com", attendees=attendees)
    for user, person in people.items():  # the organiser's copy and the guest's copy share the iCalUID
        seed(calendar_stack.sandbox.http_url, person, meeting)
        for n in range(PAGE + 3):
            seed(calendar_stack.sandbox.http_url, person, timed(f"{user} own {n}", 3 + n % 20))

    for user in ("ann", "bob"):
        calendar_stack.configure(org, user, "google_calendar", direction="two_way", caps={"incremental_page_cap": PAGE})
        calendar_stack.wait_synced(org, user, "google_calendar", timeout_s=120)

    expected = 1 + 2 * (PAGE + 3)

    def all_there():
        records = calendar_stack.crm.records(org)
        kickoffs = [r for r in records if r["fields"]["Event_Title"] == "Kick-off"]
        emails = {p["Email"].lower() for r in kickoffs for p in r["fields"].get("Participants", [])}
        return records if len(records) == expected and {a["email"].lower() for a in attendees} <= emails else None

    records = wait_for(all_there, 60, what=f"{expected} CRM events, the meeting once with both; {calendar_stack.worker_log()}")
    assert len([r for r in records if r["fields"]["Event_Title"] == "Kick-off"]) == 1
