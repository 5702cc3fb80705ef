"""Bad input on either side of a Microsoft 365 calendar sync: each event is mapped, clamped and reported,
or left out (Outlook) / dead-lettered (CRM) with the reason, and the worker goes on with the next.

Graph refuses a malformed date or an unknown zone on write, so those Outlook events are seeded through
the sandbox's control API as another client left them (see sandbox/microsoft/graph_events.py). Tests
taking `stack` run clean and again with 20% of Graph calls answered 429 or 5xx.
"""
import datetime as dt

import httpx
import pytest

from tests.e2e import test_calendar_microsoft as microsoft
from tests.e2e.test_calendar_microsoft import (
    BERLIN,
    EVENT,
    TODAY,
    connected,
    outlook_event,
    outlook_time,
    subjects,
    titles,
)
from tests.e2e.test_calendar_robustness import garbled_and_nowhere_are_dead_lettered_or_synced
from tests.fixtures.net import wait_for

pytestmark = pytest.mark.integration
stack = microsoft.stack  # the fixture: the stack as it is, then with 20% of Graph calls throttled or failing
CUSTOM_ZONE = "tzone://Microsoft/Custom"  # what Graph names a zone set up by hand in Outlook desktop


def seed(stack, person, event: dict, read_as: dict) -> dict:
    """An Outlook event as another client left it: `read_as` is what Graph answers for it."""
    answer = httpx.post(f"{stack.sandbox.http_url}/_sandbox/microsoft/users/{person.account['id']}/events",
                        json={"event": event, "read_as": read_as})
    answer.raise_for_status()
    return answer.json()


def full_worker_log(stack) -> str:
    return "\n".join(w.log() for w in stack.workers)


def records_by_title(stack, org: str) -> dict[str, dict]:
    return {r["fields"]["Event_Title"]: r for r in stack.crm.records(org)}


def test_bad_outlook_events_are_mapped_and_reported_or_left_out_and_the_worker_goes_on(stack):
    org, ann = connected(stack)
    custom = seed(stack, ann, outlook_event("Custom zone"),
                  {"originalStartTimeZone": CUSTOM_ZONE, "originalEndTimeZone": CUSTOM_ZONE})
    malformed = seed(stack, ann, outlook_event("Malformed"),
                     {"start": {"dateTime": "2030-02-30T25:61:00.0000000", "timeZone": "UTC"}})
    # Exchange Online caps a meeting at 500 attendees; an import or an on-premises server may not.
    crowd = [{"type": "required", "emailAddress": {"address": f"p{i}@big.example.com"}} for i in range(2000)]
    seed(stack, ann, outlook_event("Crowd"), {"attendees": crowd})
    ann.create(outlook_event("Big", body={"contentType": "text", "content": "x" * 1_000_000}))
    ann.create(outlook_event("Sentinel"))

    wanted = {"Custom zone", "Crowd", "Big", "Sentinel"}
    wait_for(lambda: wanted <= set(titles(stack, org)), 90,
             what=f"the good events around the bad one; CRM {titles(stack, org)}; {stack.worker_log()}")
    records = records_by_title(stack, org)
    assert "Malformed" not in records, "an Outlook event with no readable date is left out, not guessed"
    log = full_worker_log(stack)
    assert malformed["id"] in log and "not mappable" in log, "left out with the reason, in the worker's log"

    fields = records["Custom zone"]["fields"]
    expected = dt.datetime.fromisoformat(outlook_time(20, 9)["dateTime"]).replace(tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(fields["Start_DateTime"]) == expected, "the instant is kept, in UTC"
    assert custom["id"] in log and CUSTOM_ZONE in log, "the unknown zone is reported"
    assert len(records["Crowd"]["fields"]["Participants"]) == 2000, "the CRM holds every attendee"
    assert len(records["Big"]["fields"]["Description"]) == 1_000_000, "the CRM holds the whole body"
    assert len(stack.crm.records(org)) == 4 and len(ann.events()) == 5, "nothing duplicated, nothing written back"


def test_all_day_events_never_land_a_day_early_or_late_whatever_the_zone(stack):
    org, ann = connected(stack)
    day = TODAY + dt.timedelta(days=21)
    for subject, zone in (("Tokyo day", "Tokyo Standard Time"), ("Honolulu day", "Hawaiian Standard Time")):
        ann.create({"subject": subject, "isAllDay": True,
                    "start": {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": zone},
                    "end": {"dateTime": f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:00", "timeZone": zone}})
    crm_day = day + dt.timedelta(days=7)
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "CRM day", "All_day": True,
                                                  "Start_DateTime": crm_day.isoformat(),
                                                  "End_DateTime": crm_day.isoformat(), "Time_Zone": "Pacific/Auckland"}))
    wait_for(lambda: titles(stack, org) == ["CRM day", "Honolulu day", "Tokyo day"]
             and len(ann.events()) == 3, 60, what=f"every all-day event on both sides; {stack.worker_log()}")
    records = records_by_title(stack, org)
    for title in ("Tokyo day", "Honolulu day"):
        fields = records[title]["fields"]
        assert fields["All_day"] is True
        assert (fields["Start_DateTime"], fields["End_DateTime"]) == (day.isoformat(), day.isoformat()), fields
    [event] = [e for e in ann.events() if e["subject"] == "CRM day"]
    assert event["isAllDay"]
    assert (event["start"]["dateTime"][:19], event["end"]["dateTime"][:19]) == (
        f"{crm_day.isoformat()}T00:00:00", f"{(crm_day + dt.timedelta(days=1)).isoformat()}T00:00:00"), event


def crm_time(days: int, hour: int) -> str:
    return dt.datetime.combine(TODAY + dt.timedelta(days=days), dt.time(hour), BERLIN).isoformat()


def test_bad_crm_events_are_clamped_or_dead_lettered_and_the_worker_goes_on(stack, kafka_bootstrap):
    org, ann = connected(stack)
    create = stack.crm.create_event
    backwards = create(org, "ann", **(EVENT | {"Event_Title": "Backwards", "End_DateTime": crm_time(13, 9)}))
    unknown_zone = create(org, "ann", **(EVENT | {"Event_Title": "Nowhere", "Time_Zone": "Mars/Olympus_Mons",
                                                 "Start_DateTime": crm_time(14, 10)[:19],
                                                 "End_DateTime": crm_time(14, 11)[:19]}))
    garbled = create(org, "ann", **(EVENT | {"Event_Title": "Garbled", "Start_DateTime": "next tuesday-ish"}))
    big = create(org, "ann", **(EVENT | {"Event_Title": "Big", "Description": "x" * 1_000_000}))
    crowd = create(org, "ann", **(EVENT | {"Event_Title": "Crowd", "Participants": [
        {"type": "email", "Email": f"p{i}@big.example.com"} for i in range(2000)]}))
    create(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))

    wanted = {"Backwards", "Big", "Crowd", "Sentinel"}
    wait_for(lambda: wanted <= set(subjects(ann)), 120,
             what=f"the good events around the bad ones; Outlook {subjects(ann)}; {stack.worker_log()}")
    events = {e["subject"]: e for e in ann.events()}
    backwards_event = events["Backwards"]
    assert backwards_event["end"]["dateTime"] == backwards_event["start"]["dateTime"], "end clamped to the start"
    assert len(events["Big"]["body"]["content"]) == 1_000_000, "Graph holds a 1 MB body whole"
    assert events["Crowd"].get("attendees", []) == [], "participants stay in the CRM: no 2,000 invitations"
    log = full_worker_log(stack)
    assert "before start: clamped" in log and "participants kept in the CRM only" in log, "each cut is reported"

    garbled_and_nowhere_are_dead_lettered_or_synced(stack, kafka_bootstrap, org, set(events),
                                                    (backwards, unknown_zone, garbled, big, crowd))
