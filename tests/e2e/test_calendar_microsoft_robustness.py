"""Microsoft 365 calendar sync under the things that go wrong: crashes, repeats, revoked grants, shared
meetings, two workers, guests, series, previews and targets; the twins of test_calendar_robustness.

Bad input has its own module (test_calendar_microsoft_bad_input). Tests taking `stack` run clean and
again with 20% of Graph calls answered 429 or 5xx.
"""
import datetime as dt

import httpx
import pytest
import redis

from schemas import CrmCommand
from services.providers.microsoft import calendar_ids
from tests.e2e import test_calendar_microsoft as microsoft
from tests.e2e.test_calendar_microsoft import (
    BERLIN,
    EVENT,
    INTEGRATION,
    TODAY,
    connected,
    graph_event_writes,
    one_outlook_event,
    outlook_event,
    subjects,
    subscriptions,
    titles,
)
from tests.e2e.test_calendar_robustness import commands_for, users_on_every_partition
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration
stack = microsoft.stack  # the fixture: the stack as it is, then with 20% of Graph calls throttled or failing


def address_of(person) -> str:
    return person.account["email"]


def created_records(kafka_bootstrap: str, org: str) -> list[CrmCommand]:
    """Commands that create a CRM record (no record id yet), the org's only."""
    return [c for c in commands_for(kafka_bootstrap, org)
            if c.action.kind == "upsert_record" and not getattr(c.action, "record_id", None)]


# --- guests, series ---------------------------------------------------------------------------------


def contact_indexed(stack, org: str, address: str) -> bool:
    """The worker knows the CRM contact (its index of the CRM's contacts, fed by crm.changes)."""
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        return bool(client.sismember(f"crmsync:calcontacts:{org}", address.lower()))
    finally:
        client.close()


def test_guests_of_outlook_events_become_crm_contacts_once_each(stack):
    org, ann = connected(stack, guests_as_contacts=True)
    known = stack.crm.http.post(f"/v1/orgs/{org}/modules/Contacts/records", json={
        "owner_id": "ann", "source": "ui", "fields": {"Email": "known@customer.com", "Last_Name": "Known"}})
    known.raise_for_status()
    wait_for(lambda: contact_indexed(stack, org, "known@customer.com"), 30, what="the known contact indexed")
    guests = [{"emailAddress": {"address": "Bob@Customer.com", "name": "Bob"}, "type": "required"},
              {"emailAddress": {"address": "bob@customer.com"}, "type": "optional"},
              {"emailAddress": {"address": "KNOWN@customer.com"}, "type": "required"},
              {"emailAddress": {"address": address_of(ann)}, "type": "required"}]
    for subject in ("First", "Second"):
        ann.create(outlook_event(subject, attendees=guests))
    wait_for(lambda: titles(stack, org) == ["First", "Second"], 45, what=f"both events in the CRM; {stack.worker_log()}")

    def contacts() -> list[str]:
        return sorted(c["fields"]["Email"].lower() for c in stack.crm.records(org, "Contacts"))

    wait_for(lambda: contacts() == ["bob@customer.com", "known@customer.com"], 30,
             what=f"Bob as a contact; contacts {contacts()}")
    [bob] = [c for c in stack.crm.records(org, "Contacts") if c["fields"]["Email"].lower() == "bob@customer.com"]
    assert bob["fields"]["Last_Name"] == "Bob", "named as Outlook names him"
    # A third event after both: had a second Bob been on his way, he would be there by now.
    ann.create(outlook_event("Third", attendees=guests[:2]))
    wait_for(lambda: len(stack.crm.records(org)) == 3, 45, what="the third event in the CRM")
    assert contacts() == ["bob@customer.com", "known@customer.com"], "once each, case-insensitive, never the user"


def next_monday(after_days: int) -> dt.date:
    day = TODAY + dt.timedelta(days=after_days)
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


def test_recurring_events_go_both_ways_as_one_series(stack):
    org, ann = connected(stack)
    monday = next_monday(14)
    start = dt.datetime.combine(monday, dt.time(10), BERLIN)
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Weekly", "Start_DateTime": start.isoformat(),
                                                  "End_DateTime": (start + dt.timedelta(hours=1)).isoformat(),
                                                  "Recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO"]}))
    series = one_outlook_event(stack, ann)  # /events lists a series once, as its master
    assert series["type"] == "seriesMaster", series
    pattern, span = series["recurrence"]["pattern"], series["recurrence"]["range"]
    assert (pattern["type"], pattern["daysOfWeek"], pattern["interval"]) == ("weekly", ["monday"], 1)
    assert (span["type"], span["numberOfOccurrences"]) == ("numbered", 5)

    first = TODAY + dt.timedelta(days=20)
    ann.create(outlook_event("Daily stand-up", days=20, recurrence={
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": first.isoformat(), "numberOfOccurrences": 10}}))

    def standup():
        return next((r for r in stack.crm.records(org) if r["fields"]["Event_Title"] == "Daily stand-up"), None)

    record = wait_for(standup, 45, what=f"the Outlook series in the CRM; {stack.worker_log()}")
    [rule] = record["fields"]["Recurrence"]
    parts = set(rule.removeprefix("RRULE:").split(";"))
    assert {"FREQ=DAILY", "COUNT=10"} <= parts and not any(p.startswith("BYDAY") for p in parts), rule
    assert titles(stack, org) == ["Daily stand-up", "Weekly"], "a series is one CRM event, not ten"
    assert subjects(ann) == ["Daily stand-up", "Weekly"], "and nothing came back as a second series"


# --- crashes and repeats --------------------------------------------------------------------------


def test_a_worker_killed_after_its_writes_leaves_exactly_one_event_each_side(stack):
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **EVENT)
    ann.create(outlook_event("From Outlook"))
    wait_for(lambda: len(ann.events()) == 2 and len(stack.crm.records(org)) == 2, 45,
             what=f"both events on both sides; {stack.worker_log()}")
    # Killed before faust's periodic offset commit: the CRM change and the notification come again.
    with stack.worker_stopped(kill=True):
        pass
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))
    ann.create(outlook_event("Outlook sentinel"))
    expected = ["From Outlook", "Outlook sentinel", "Pipeline review", "Sentinel"]
    wait_for(lambda: subjects(ann) == expected and titles(stack, org) == expected, 90,
             what=f"the sentinels after the restart; CRM {titles(stack, org)}, Outlook {subjects(ann)}; "
                  f"{stack.worker_log()}")


def change_deliveries(stack, person) -> list[dict]:
    """Change notifications the sandbox delivered on the person's subscription, oldest first."""
    ours = {s["id"] for s in subscriptions(stack, person)}
    every = httpx.get(f"{stack.sandbox.http_url}/_sandbox/microsoft/deliveries").json()
    return [d for d in every if d["kind"] == "change" and d["subscription_id"] in ours and not d["error"]]


def test_a_notification_delivered_twice_makes_one_pull_and_no_duplicate(stack, kafka_bootstrap):
    org, ann = connected(stack)
    ann.create(outlook_event("From Outlook"))
    wait_for(lambda: titles(stack, org) == ["From Outlook"], 45, what=f"the event in the CRM; {stack.worker_log()}")
    delivered = wait_for(lambda: change_deliveries(stack, ann), 10, what="the notification delivered")[-1]["payload"]
    before = len(created_records(kafka_bootstrap, org))
    webhook = f"{stack.ingest_url}/v1/webhooks/graph"
    for _ in range(2):  # Graph delivering the same notification again: ingest has seen it
        assert httpx.post(webhook, json=delivered).status_code == 202
    again = {"value": [dict(delivered["value"][0], changeType="updated")]}
    for _ in range(2):  # a new notification about nothing new, itself delivered twice: one pull, no change
        assert httpx.post(webhook, json=again).status_code == 202
    ann.create(outlook_event("Sentinel"))
    wait_for(lambda: titles(stack, org) == ["From Outlook", "Sentinel"], 45, what="the sentinel in the CRM")
    created = created_records(kafka_bootstrap, org)[before:]
    assert [c.action.fields["Event_Title"] for c in created] == ["Sentinel"], created
    assert len(ann.events()) == 2


# --- shared meetings, two workers -----------------------------------------------------------------


def test_a_meeting_on_two_crm_users_outlook_calendars_is_one_crm_event_with_both(stack):
    org = unique_org()
    people = {}
    for user in ("ann", "bob"):
        people[user] = stack.connect_microsoft(org, user, f"{user}.{org}@example.com")
        stack.configure(org, user, INTEGRATION, direction="two_way")
    for user in people:
        stack.wait_synced(org, user, INTEGRATION)
    ann, bob = people["ann"], people["bob"]
    # Ann organises; Exchange puts the meeting, with the same iCalUId, in Bob's calendar too.
    ann.create(outlook_event("Kick-off", attendees=[{"emailAddress": {"address": address_of(bob)},
                                                    "type": "required"}]))
    wait_for(lambda: [e for e in bob.events() if e["subject"] == "Kick-off"], 30, what="Bob's copy")
    [ann_copy], [bob_copy] = ann.events(), bob.events()
    assert ann_copy["iCalUId"] == bob_copy["iCalUId"] and not bob_copy["isOrganizer"]
    bob.create(outlook_event("Bob's sentinel"))  # Bob's sync has pulled his copy by the time this arrives
    wait_for(lambda: titles(stack, org) == ["Bob's sentinel", "Kick-off"], 60,
             what=f"the meeting once and Bob's sentinel; CRM {titles(stack, org)}; {stack.worker_log()}")
    [meeting] = [r for r in stack.crm.records(org) if r["fields"]["Event_Title"] == "Kick-off"]
    participants = {p["Email"].lower() for p in meeting["fields"].get("Participants", [])}
    assert meeting["owner_id"] == "ann" and address_of(bob).lower() in participants, meeting
    assert meeting["fields"]["ICal_UID"] == ann_copy["iCalUId"]


def test_two_workers_share_the_users_and_each_event_lands_once(calendar_stack):
    stack = calendar_stack
    second = stack.add_joined_worker()
    org = unique_org()
    people = {}
    for user in users_on_every_partition(org, stack.settings.topic_partitions, per_partition=2,
                                         integration=INTEGRATION):
        people[user] = stack.connect_microsoft(org, user, f"{user}.{org}@example.com")
        stack.configure(org, user, INTEGRATION, direction="two_way")
    for user in people:
        stack.wait_synced(org, user, INTEGRATION, timeout_s=90)
    for user, person in people.items():
        stack.crm.create_event(org, user, **(EVENT | {"Event_Title": f"{user} from the CRM"}))
        person.create(outlook_event(f"{user} from Outlook"))
    for user, person in people.items():
        expected = [f"{user} from Outlook", f"{user} from the CRM"]
        wait_for(lambda p=person, e=expected: subjects(p) == e, 90, what=f"{user}'s events; {stack.worker_log()}")
    expected = sorted(f"{user} from {side}" for user in people for side in ("Outlook", "the CRM"))
    wait_for(lambda: titles(stack, org) == expected, 60, what=f"every event once in the CRM: {titles(stack, org)}")
    for user in people:
        assert {r["owner_id"] for r in stack.crm.records(org) if r["fields"]["Event_Title"].startswith(f"{user} ")} \
            == {user}
    assert org in second.log(), "the second worker took a share of the users"
    assert all(w.process.poll() is None for w in stack.workers)


# --- accounts and targets -------------------------------------------------------------------------


def test_a_revoked_grant_is_auth_failed_and_sync_resumes_once_authorised_again(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    httpx.post(f"{stack.sandbox.http_url}/_sandbox/accounts/{ann.account['id']}/revoke").raise_for_status()
    stack.crm.create_event(org, "ann", **EVENT)
    status = wait_for(lambda: (stack.status(org, "ann", INTEGRATION) or {}).get("state") == "auth_failed"
                      and stack.status(org, "ann", INTEGRATION), 45, what=f"auth_failed; {stack.worker_log()}")
    assert "invalid_grant" in status["reason"], status

    # The user connects again (what ingest's OAuth callback does): a new grant and a full sync job.
    ann = stack.connect_microsoft(org, "ann", address_of(ann))
    stack.request_full_sync(org, "ann", INTEGRATION)
    event = one_outlook_event(stack, ann)  # the change made while the grant was revoked is not lost
    assert event["subject"] == "Pipeline review"
    stack.wait_synced(org, "ann", INTEGRATION)
    ann.create(outlook_event("After reconnecting"))  # notifications flow again
    wait_for(lambda: titles(stack, org) == ["After reconnecting", "Pipeline review"], 45,
             what=f"an Outlook change after reconnecting; {stack.worker_log()}")


def test_a_calendar_the_user_cannot_write_is_refused_with_a_status(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    [holidays] = [c for c in ann.calendars() if not c["canEdit"]]
    stack.configure(org, "ann", INTEGRATION, target_id=holidays["id"])
    status = wait_for(lambda: (stack.status(org, "ann", INTEGRATION) or {}).get("state") == "invalid_target"
                      and stack.status(org, "ann", INTEGRATION), 45, what=f"the refusal; {stack.worker_log()}")
    assert holidays["id"] in status["reason"]
    stack.crm.create_event(org, "ann", **EVENT)
    [default] = [c for c in ann.calendars() if c.get("isDefaultCalendar")]
    stack.configure(org, "ann", INTEGRATION, target_id=default["id"])  # the user picks one they can write
    assert one_outlook_event(stack, ann)["subject"] == "Pipeline review"
    stack.wait_synced(org, "ann", INTEGRATION)


# --- preview --------------------------------------------------------------------------------------


def test_preview_counts_each_side_for_microsoft_and_writes_nothing(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    stack.configure(org, "ann", INTEGRATION, enabled=False)
    met = ann.create(outlook_event("Met in Outlook"))
    ann.create(outlook_event("Only in Outlook"))
    # An event an earlier sync wrote for a CRM record deleted since: our extended properties name it.
    ann.create(outlook_event("Left behind", singleValueExtendedProperties=calendar_ids.stamp(org, "ann", "gone")))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Only in the CRM"}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Met in the CRM", "ICal_UID": met["iCalUId"]}))

    def counted() -> dict | None:
        answer = stack.admin("POST", f"/v1/orgs/{org}/users/ann/integrations/{INTEGRATION}/preview")
        assert answer.status_code == 200, answer.text
        body = answer.json()  # once both CRM events are indexed
        return body if body["create_in_provider"] + body["link"] == 2 else None

    writes = graph_event_writes(stack)
    preview = wait_for(counted, 60, what=f"a preview with both CRM events; {stack.worker_log()}")
    assert graph_event_writes(stack) == writes, f"a preview writes nothing to Outlook: {stack.calls()}"
    assert preview["enabled"] is False
    assert (preview["create_in_provider"], preview["create_in_crm"], preview["link"]) == (1, 1, 1), preview
    assert preview["update_in_provider"] + preview["update_in_crm"] == 1, f"the linked pair differs: {preview}"
    assert (preview["delete_in_provider"], preview["delete_in_crm"]) == (1, 0), preview
    assert subjects(ann) == ["Left behind", "Met in Outlook", "Only in Outlook"]
    assert titles(stack, org) == ["Met in the CRM", "Only in the CRM"], "nor to the CRM"
