"""calendar_sync under the things that go wrong: crashes, repeats, clashes, shared meetings, bad input.

Google is the provider here; the engine is the same for Microsoft.
"""
import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from schemas import CrmCommand, DeadLetter
from tests.e2e.test_calendar_google import EVENT, RETRIES, connected, crm_record, one_google_event
from tests.fixtures.net import wait_for
from tests.fixtures.topics import read_topic
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


def insert(person, **body) -> dict:
    base = {"start": {"dateTime": "2030-06-01T09:00:00Z"}, "end": {"dateTime": "2030-06-01T10:00:00Z"}}
    return person.calendar.events().insert(calendarId="primary", body=base | body).execute(num_retries=RETRIES)


def commands_for(kafka_bootstrap: str, org: str) -> list[CrmCommand]:
    return [c for c in (CrmCommand.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "crm.commands"))
            if c.org_id == org]


def crm_event_dead_letters(kafka_bootstrap: str, org: str) -> list[DeadLetter]:
    """The org's CRM event changes the worker could not sync, each with the reason."""
    letters = [DeadLetter.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "calendar_sync.crm_events.dlq")]
    return [d for d in letters if org in (d.key or "")]


def garbled_and_nowhere_are_dead_lettered_or_synced(stack, kafka_bootstrap: str, org: str, synced: set[str],
                                                    records: tuple[dict, ...]) -> None:
    """The CRM events titled Garbled (no date) and Nowhere (an unknown zone) are dead-lettered with the
    reason unless synced; the CRM keeps every one of `records`."""
    letters = wait_for(lambda: crm_event_dead_letters(kafka_bootstrap, org), 30, what="the dead letters")
    reasons = " | ".join(d.reason for d in letters)
    assert "Garbled" not in synced and "Start_DateTime" in reasons, reasons
    if "Nowhere" not in synced:
        assert "Mars/Olympus_Mons" in reasons, reasons
    for record in records:
        assert crm_record(stack, org, record["id"]) is not None, "the CRM keeps every record"


def test_the_same_field_edited_on_both_sides_takes_the_later_edit_and_is_listed(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_google_event(stack, ann)
    with stack.worker_stopped():
        ann.calendar.events().patch(calendarId="primary", eventId=event["id"],
                                    body={"summary": "Google's title"}).execute(num_retries=RETRIES)
        stack.crm.update(org, "Events", record["id"], Event_Title="CRM's later title")
    wait_for(lambda: ann.events()[0]["summary"] == "CRM's later title", 60,
             what=f"the later edit on both sides; {stack.worker_log()}")
    assert crm_record(stack, org, record["id"])["fields"]["Event_Title"] == "CRM's later title"
    listed = stack.admin("GET", f"/v1/orgs/{org}/users/ann/integrations/google_calendar/conflicts").json()
    [clash] = [c for c in listed["conflicts"] if c["field"] == "title"]
    assert (clash["crm_value"], clash["provider_value"], clash["winner"]) == (
        "CRM's later title", "Google's title", "crm")


def test_a_worker_killed_after_the_provider_write_leaves_exactly_one_event_each_side(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    with stack.worker_stopped(kill=True):  # before faust's periodic offset commit: delivered again after
        pass
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))
    wait_for(lambda: len(ann.events()) == 2, 90, what=f"the sentinel after the restart; {stack.worker_log()}")
    assert sorted(e["summary"] for e in ann.events()) == ["Pipeline review", "Sentinel"]
    assert len(stack.crm.records(org)) == 2


def test_a_notification_delivered_twice_changes_nothing_twice(calendar_stack, kafka_bootstrap):
    stack = calendar_stack
    org, ann = connected(stack)
    insert(ann, summary="From Google")
    wait_for(lambda: len(stack.crm.records(org)) == 1, 45, what="the event in the CRM")
    [channel] = [c for c in stack.channels() if c["calendar"] == ann.account["email"].lower()]
    delivered = [d for d in channel["deliveries"] if d.get("state", d.get("resource_state")) != "sync"] or \
        channel["deliveries"]
    headers = {"X-Goog-Channel-ID": channel["id"], "X-Goog-Resource-ID": channel["resourceId"],
               "X-Goog-Resource-State": "exists", "X-Goog-Channel-Token": channel.get("token", ""),
               "X-Goog-Message-Number": str(10_000)}
    before = len(commands_for(kafka_bootstrap, org))
    for _ in range(2):  # the same delivery twice, then a new delivery about nothing new
        assert httpx.post(f"{stack.ingest_url}/v1/webhooks/google/calendar", headers=headers).status_code == 200
    headers["X-Goog-Message-Number"] = "10001"
    assert httpx.post(f"{stack.ingest_url}/v1/webhooks/google/calendar", headers=headers).status_code == 200
    insert(ann, summary="Sentinel")
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what="the sentinel in the CRM")
    created = [c for c in commands_for(kafka_bootstrap, org)[before:] if c.action.kind == "upsert_record"]
    assert len(created) == 1, f"only the sentinel made a command: {created}"
    assert delivered is not None


def test_the_same_meeting_on_two_users_calendars_is_one_crm_event_with_both(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    people = {}
    for user in ("ann", "bob"):
        people[user] = stack.connect_google(org, user, f"{user}.{org}@example.com")
        stack.configure(org, user, "google_calendar", direction="two_way")
        stack.wait_synced(org, user, "google_calendar")
    attendees = [{"email": people["ann"].account["email"]}, {"email": people["bob"].account["email"]}]
    for user in ("ann", "bob"):  # the organiser's copy and the guest's copy share the iCalUID
        body = {"summary": "Kick-off", "iCalUID": f"kickoff-{org}@example.com", "attendees": attendees,
                "start": {"dateTime": "2030-06-01T09:00:00Z"}, "end": {"dateTime": "2030-06-01T10:00:00Z"}}
        httpx.post(f"{stack.sandbox.http_url}/_sandbox/google/accounts/{people[user].account['id']}"
                   f"/calendars/primary/events", json=body).raise_for_status()

    def one_meeting_with_both():
        records = stack.crm.records(org)
        if len(records) != 1:
            return None
        emails = {p["Email"].lower() for p in records[0]["fields"].get("Participants", [])}
        return records[0] if {a["email"].lower() for a in attendees} <= emails else None

    meeting = wait_for(one_meeting_with_both, 60, what=f"one CRM event for the meeting; {stack.worker_log()}")
    assert meeting["fields"]["Event_Title"] == "Kick-off"


def users_on_every_partition(org: str, partitions: int, per_partition: int,
                             integration: str = "google_calendar") -> list[str]:
    """User ids whose keys fill every partition, so that whichever partitions a worker gets, it has users."""
    partitioner, all_partitions = DefaultPartitioner(), list(range(partitions))
    chosen: dict[int, list[str]] = {p: [] for p in all_partitions}
    index = 0
    while any(len(users) < per_partition for users in chosen.values()):
        user = f"u{index}"
        partition = partitioner(f"{org}:{user}:{integration}".encode(), all_partitions, all_partitions)
        if len(chosen[partition]) < per_partition:
            chosen[partition].append(user)
        index += 1
    return [user for users in chosen.values() for user in users]


def test_two_workers_share_the_users_and_each_event_lands_once(calendar_stack):
    stack = calendar_stack
    second = stack.add_joined_worker()
    org = unique_org()
    people = {}
    for user in users_on_every_partition(org, stack.settings.topic_partitions, per_partition=2):
        people[user] = stack.connect_google(org, user, f"{user}.{org}@example.com")
        stack.configure(org, user, "google_calendar", direction="two_way")
    for user in people:
        stack.wait_synced(org, user, "google_calendar", timeout_s=90)
    for user in people:
        for n in range(3):
            stack.crm.create_event(org, user, **(EVENT | {"Event_Title": f"{user}-{n}"}))
    for user, person in people.items():
        wait_for(lambda p=person: len(p.events()) == 3, 90, what=f"{user}'s events; {stack.worker_log()}")
        assert sorted(e["summary"] for e in person.events()) == [f"{user}-{n}" for n in range(3)]
    assert org in second.log(), "the second worker took a share of the users"
    assert second.process.poll() is None


def test_rapid_edits_of_one_event_apply_in_order(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    one_google_event(stack, ann)
    for n in range(8):
        stack.crm.update(org, "Events", record["id"], Event_Title=f"Version {n}")
    wait_for(lambda: ann.events()[0]["summary"] == "Version 7", 60, what="the last edit wins")


def test_a_calendar_the_user_cannot_write_is_refused_with_a_status(calendar_stack):
    stack = calendar_stack
    org = unique_org()
    ann = stack.connect_google(org, "ann", f"ann.{org}@example.com")
    shared = httpx.post(f"{stack.sandbox.http_url}/_sandbox/google/accounts/{ann.account['id']}/calendars",
                        json={"summary": "Holidays", "access_role": "reader"}).json()
    stack.configure(org, "ann", "google_calendar", target_id=shared["id"])
    status = wait_for(lambda: (stack.status(org, "ann", "google_calendar") or {}).get("state") == "invalid_target"
                      and stack.status(org, "ann", "google_calendar"), 45, what="the refusal")
    assert shared["id"] in status["reason"]


def test_a_revoked_grant_is_auth_failed_and_sync_resumes_once_authorised_again(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    httpx.post(f"{stack.sandbox.http_url}/_sandbox/accounts/{ann.account['id']}/revoke").raise_for_status()
    stack.crm.create_event(org, "ann", **EVENT)
    status = wait_for(lambda: (stack.status(org, "ann", "google_calendar") or {}).get("state") == "auth_failed"
                      and stack.status(org, "ann", "google_calendar"), 45, what=f"auth_failed; {stack.worker_log()}")
    assert "invalid_grant" in status["reason"]

    # The user connects again (what ingest's OAuth callback does): a new grant and a full sync job.
    ann = stack.connect_google(org, "ann", ann.account["email"])
    stack.request_full_sync(org, "ann", "google_calendar")
    one_google_event(stack, ann)
    stack.wait_synced(org, "ann", "google_calendar")


def test_bad_crm_events_are_clamped_or_dead_lettered_and_the_worker_goes_on(calendar_stack, kafka_bootstrap):
    stack = calendar_stack
    org, ann = connected(stack)
    backwards = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Backwards",
                                                              "End_DateTime": "2030-03-04T09:00:00+01:00"}))
    unknown_zone = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Nowhere",
                                                                 "Start_DateTime": "2030-03-04T10:00:00",
                                                                 "End_DateTime": "2030-03-04T11:00:00",
                                                                 "Time_Zone": "Mars/Olympus_Mons"}))
    garbled = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Garbled",
                                                            "Start_DateTime": "next tuesday-ish"}))
    # A CRM record travels through ingest, whose limit is 1 MiB a request: a 1 MB description fits alone.
    big = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Big", "Description": "x" * 1_000_000}))
    crowd = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Crowd", "Participants": [
        {"type": "email", "Email": f"p{i}@big.com"} for i in range(2000)]}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))

    def settled():
        titles = {e["summary"] for e in ann.events()}
        return {"Backwards", "Big", "Crowd", "Sentinel"} <= titles and titles

    # Backwards: end before start is clamped to the start and synced.
    titles = wait_for(settled, 120, what=f"the good events around the bad ones; {stack.worker_log()}")
    [backwards_event] = [e for e in ann.events() if e["summary"] == "Backwards"]
    assert backwards_event["end"]["dateTime"] == backwards_event["start"]["dateTime"]
    assert {"Big", "Crowd"} <= titles, "a 1 MB description and 2,000 attendees are mapped, cut where Google must"
    [crowded] = [e for e in ann.events() if e["summary"] == "Crowd"]
    assert 0 < len(crowded["attendees"]) <= 500
    [described] = [e for e in ann.events() if e["summary"] == "Big"]
    assert 0 < len(described["description"]) <= 8192

    garbled_and_nowhere_are_dead_lettered_or_synced(stack, kafka_bootstrap, org, titles,
                                                    (backwards, unknown_zone, garbled, big, crowd))


def test_recurring_events_go_both_ways(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Weekly",
                                                  "Recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO"]}))
    event = one_google_event(stack, ann)
    [rule] = event["recurrence"]
    assert sorted(rule.removeprefix("RRULE:").split(";")) == ["BYDAY=MO", "COUNT=5", "FREQ=WEEKLY"]
    instances = ann.calendar.events().instances(calendarId="primary", eventId=event["id"]).execute(
        num_retries=RETRIES)["items"]
    assert len(instances) == 5

    insert(ann, summary="Daily stand-up", recurrence=["RRULE:FREQ=DAILY;COUNT=10"],
           start={"dateTime": "2030-06-01T09:00:00Z", "timeZone": "UTC"},
           end={"dateTime": "2030-06-01T09:15:00Z", "timeZone": "UTC"})

    def standup():
        return next((r for r in stack.crm.records(org) if r["fields"]["Event_Title"] == "Daily stand-up"), None)

    record = wait_for(standup, 45, what=f"the recurring Google event in the CRM; {stack.worker_log()}")
    [rule] = record["fields"]["Recurrence"]
    assert sorted(rule.removeprefix("RRULE:").split(";")) == ["COUNT=10", "FREQ=DAILY"]
