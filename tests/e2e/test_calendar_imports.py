"""Which calendar holds a CRM event, end to end, Google and Microsoft alike: imported and migrated events
stay out until a person edits or bulk-updates them, and an event moved to another owner leaves the first
owner's calendar for the second's, never on both.
"""
import pytest

from tests.e2e import test_calendar_microsoft as microsoft
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

EVENT = microsoft.EVENT  # two weeks ahead: inside both providers' first-sync windows


def connect(stack, provider: str, org: str, user: str):
    if provider == "google":
        return stack.connect_google(org, user, f"{user}.{org}@example.com")
    return stack.connect_microsoft(org, user, f"{user}.{org}@example.com")


def enable(stack, provider: str, org: str, user: str) -> None:
    integration = f"{provider}_calendar"
    stack.configure(org, user, integration, direction="two_way")
    stack.wait_synced(org, user, integration)


def titles(person) -> list[str]:
    """The titles of the events in the person's calendar, whichever provider."""
    return sorted(e.get("summary") or e.get("subject") or "" for e in person.events())


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_an_imported_event_is_synced_once_edited_one_by_one_a_migrated_one_never(calendar_stack, provider):
    stack = calendar_stack
    org = unique_org()
    ann = connect(stack, provider, org, "ann")
    enable(stack, provider, org, "ann")
    imported = stack.crm.create_event(org, "ann", source="import", **(EVENT | {"Event_Title": "Imported"}))
    stack.crm.create_event(org, "ann", source="migration", **(EVENT | {"Event_Title": "Migrated"}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Typed in"}))
    wait_for(lambda: titles(ann) == ["Typed in"], 45, what=f"the typed-in event alone; {stack.worker_log()}")

    stack.crm.update(org, "Events", imported["id"], Venue="Hall")  # a person edits it in the CRM
    wait_for(lambda: titles(ann) == ["Imported", "Typed in"], 45,
             what=f"the edited import in the calendar; {stack.worker_log()}")
    stack.crm.update(org, "Events", imported["id"], Event_Title="Imported, renamed")
    wait_for(lambda: titles(ann) == ["Imported, renamed", "Typed in"], 45,
             what=f"later edits follow, no second copy; {stack.worker_log()}")
    assert "Migrated" not in titles(ann)


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_first_sync_takes_an_import_a_person_edited_and_leaves_the_untouched_ones(calendar_stack, provider):
    stack = calendar_stack
    org = unique_org()
    ann = connect(stack, provider, org, "ann")
    edited = stack.crm.create_event(org, "ann", source="import", **(EVENT | {"Event_Title": "Imported, edited"}))
    stack.crm.create_event(org, "ann", source="import", **(EVENT | {"Event_Title": "Imported only"}))
    r = stack.crm.http.post(f"/v1/orgs/{org}/modules/Events/bulk-update",
                            json={"record_ids": [edited["id"]], "fields": {"Venue": "Hall"}})
    assert r.status_code == 200, r.text
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))  # indexed after the others
    stack.configure(org, "ann", f"{provider}_calendar", enabled=False)

    def would_create() -> int:
        answer = stack.admin("POST", f"/v1/orgs/{org}/users/ann/integrations/{provider}_calendar/preview")
        assert answer.status_code == 200, answer.text
        return answer.json()["create_in_provider"]

    wait_for(lambda: would_create() == 2, 60, what=f"the preview counting the two; {stack.worker_log()}")
    enable(stack, provider, org, "ann")
    wait_for(lambda: titles(ann) == ["Imported, edited", "Sentinel"], 45,
             what=f"the first sync's writes; {stack.worker_log()}")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_an_event_moved_to_another_owner_leaves_the_first_calendar_for_the_second(calendar_stack, provider):
    stack = calendar_stack
    org = unique_org()
    ann, bob = connect(stack, provider, org, "ann"), connect(stack, provider, org, "bob")
    enable(stack, provider, org, "ann")
    enable(stack, provider, org, "bob")
    record = stack.crm.create_event(org, "ann", **EVENT)
    wait_for(lambda: titles(ann) == ["Pipeline review"], 45, what=f"the event in Ann's calendar; {stack.worker_log()}")

    moved = stack.crm.http.patch(f"/v1/orgs/{org}/modules/Events/records/{record['id']}",
                                 json={"owner_id": "bob", "fields": {}})
    assert moved.status_code == 200, moved.text
    wait_for(lambda: titles(bob) == ["Pipeline review"] and titles(ann) == [], 45,
             what=f"the event on Bob's calendar only; Ann {titles(ann)} Bob {titles(bob)}; {stack.worker_log()}")
    [crm] = stack.crm.records(org)
    assert crm["owner_id"] == "bob", "one CRM event, Bob's: Ann's delete did not come back as a CRM delete"

    stack.crm.update(org, "Events", record["id"], Event_Title="Bob's review")  # Bob's from now on
    wait_for(lambda: titles(bob) == ["Bob's review"], 45, what=f"Bob's edit on his calendar; {stack.worker_log()}")
    assert titles(ann) == [] and len(stack.crm.records(org)) == 1
