"""Exceptions of a recurring series, Microsoft 365, end to end; the twin of test_calendar_recurring (Google).

An occurrence cancelled in Outlook becomes an EXDATE of the CRM's series, although Graph v1.0 reports no
cancelled occurrence (the adapter compares the series' /instances with its rule); an occurrence edited
in Outlook becomes its own CRM event tied to the series (Series_Id, Original_Start), and later CRM edits
of it reach that occurrence, not the series; cancelled in Outlook, that exception leaves the CRM. A date the CRM excludes deletes the Outlook occurrence; a
CRM exception is written over its occurrence. Resyncs and repeated rounds make no duplicates.
"""
import datetime as dt

import pytest

from tests.e2e.test_calendar_microsoft import (
    BERLIN,
    EVENT,
    INTEGRATION,
    connected,
    control,
    crm_record,
    one_outlook_event,
    stack,  # noqa: F401  (the fixture: clean, then with 20% of provider calls failing)
)
from tests.e2e.test_calendar_microsoft_robustness import next_monday
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

MONDAY = next_monday(14)
FIRST = dt.datetime.combine(MONDAY, dt.time(10), BERLIN)
SERIES = EVENT | {"Event_Title": "Weekly review", "Start_DateTime": FIRST.isoformat(),
                  "End_DateTime": (FIRST + dt.timedelta(hours=1)).isoformat(),
                  "Recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4"]}  # canonical form


def week(n: int, hour: int = 10) -> dt.datetime:
    """The series' n-th Monday (0-based) at `hour` in Berlin."""
    return dt.datetime.combine(MONDAY + dt.timedelta(weeks=n), dt.time(hour), BERLIN)


def exdate(n: int) -> str:
    return f"EXDATE:{week(n).astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


def instances(person, master_id: str) -> list[dict]:
    """The series' occurrences and exceptions as Outlook lists them (cancelled ones left out), by start."""
    window = {"startDateTime": (FIRST - dt.timedelta(days=1)).isoformat(),
              "endDateTime": (FIRST + dt.timedelta(weeks=5)).isoformat(), "$top": "100"}
    found = person._call("GET", f"/events/{master_id}/instances", params=window).json()["value"]
    return sorted(found, key=lambda i: i["start"]["dateTime"])


def all_four(person, master_id: str) -> list[dict]:
    def four() -> list[dict] | None:
        found = instances(person, master_id)
        return found if len(found) == 4 else None

    return wait_for(four, 45, what="the four occurrences in Outlook")


def exceptions_of(calendar, org: str, series_id: str) -> list[dict]:
    return [r for r in calendar.crm.records(org) if r["id"] != series_id]


def test_outlook_exceptions_of_a_series_reach_the_crm_and_back(stack):  # noqa: F811
    org, ann = connected(stack)
    series = stack.crm.create_event(org, "ann", **SERIES)
    master = one_outlook_event(stack, ann)
    assert master["type"] == "seriesMaster"
    occurrences = all_four(ann, master["id"])

    ann.delete(occurrences[1]["id"])
    wait_for(lambda: exdate(1) in crm_record(stack, org, series["id"])["fields"]["Recurrence"], 45,
             what=f"the occurrence cancelled in Outlook as an EXDATE of the CRM's series; {stack.worker_log()}")

    ann.patch(occurrences[2]["id"], {"subject": "Review, moved"})
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"the edited occurrence in the CRM; {stack.worker_log()}")
    [exception] = exceptions_of(stack, org, series["id"])
    assert exception["fields"]["Event_Title"] == "Review, moved"
    assert exception["fields"]["Series_Id"] == series["id"]
    assert exception["fields"]["Original_Start"] == week(2).isoformat()
    held = crm_record(stack, org, series["id"])["fields"]
    assert held["Event_Title"] == "Weekly review", "the series is untouched"
    assert held["Recurrence"] == [*SERIES["Recurrence"], exdate(1)], "excluded once"

    stack.crm.update(org, "Events", exception["id"], Event_Title="Review, moved again")
    wait_for(lambda: ann._call("GET", f"/events/{occurrences[2]['id']}").json()["subject"] == "Review, moved again",
             45, what=f"the CRM edit on the Outlook occurrence; {stack.worker_log()}")
    assert [i["subject"] for i in instances(ann, master["id"])] == ["Weekly review", "Review, moved again",
                                                                    "Weekly review"]
    assert len(ann.events()) == 1 and len(stack.crm.records(org)) == 2, "no duplicate on either side"

    ann.delete(occurrences[2]["id"])  # the exception cancelled in Outlook: Graph names it nowhere either
    wait_for(lambda: [r["id"] for r in stack.crm.records(org)] == [series["id"]]  # two CRM commands, either first
             and crm_record(stack, org, series["id"])["fields"]["Recurrence"] == [*SERIES["Recurrence"], exdate(1),
                                                                                   exdate(2)], 45,
             what=f"the CRM exception of the cancelled occurrence deleted, its date excluded; {stack.worker_log()}")
    assert [i["subject"] for i in instances(ann, master["id"])] == ["Weekly review", "Weekly review"]


def test_crm_exceptions_of_a_series_reach_outlook_as_its_occurrences(stack):  # noqa: F811
    org, ann = connected(stack)
    series = stack.crm.create_event(org, "ann", **SERIES)
    master = one_outlook_event(stack, ann)
    all_four(ann, master["id"])

    stack.crm.update(org, "Events", series["id"], Recurrence=[*SERIES["Recurrence"], exdate(1)])
    wait_for(lambda: len(instances(ann, master["id"])) == 3, 45,
             what=f"the date the CRM excluded gone from Outlook; {stack.worker_log()}")
    assert week(1).astimezone(dt.UTC).strftime("%Y-%m-%dT%H") not in {
        i["start"]["dateTime"][:13] for i in instances(ann, master["id"])}

    moved = stack.crm.create_event(org, "ann", **(EVENT | {
        "Event_Title": "Review, in the big room", "Venue": "Big room", "Series_Id": series["id"],
        "Original_Start": week(2).isoformat(), "Start_DateTime": week(2, 14).isoformat(),
        "End_DateTime": week(2, 15).isoformat()}))
    wait_for(lambda: [i["subject"] for i in instances(ann, master["id"])] == [
        "Weekly review", "Review, in the big room", "Weekly review"], 45,
        what=f"the CRM's exception on its Outlook occurrence; {stack.worker_log()}")
    [exception] = [i for i in instances(ann, master["id"]) if i["type"] == "exception"]
    start = dt.datetime.fromisoformat(exception["start"]["dateTime"][:19]).replace(tzinfo=dt.UTC)
    assert start == week(2, 14) and exception["location"]["displayName"] == "Big room"
    assert exception["seriesMasterId"] == master["id"]
    assert len(ann.events()) == 1, "the series only: the exception is its occurrence, no stand-alone copy"
    assert crm_record(stack, org, moved["id"])["fields"]["Event_Title"] == "Review, in the big room"
    assert len(stack.crm.records(org)) == 2, "the exception's own echo made no third CRM event"
    assert crm_record(stack, org, series["id"])["fields"]["Recurrence"] == [*SERIES["Recurrence"], exdate(1)], \
        "the Outlook cancellation the CRM asked for came back as nothing new"


def test_a_resync_after_exceptions_makes_no_duplicates(stack):  # noqa: F811
    org, ann = connected(stack)
    series = stack.crm.create_event(org, "ann", **SERIES)
    master = one_outlook_event(stack, ann)
    occurrences = all_four(ann, master["id"])
    ann.delete(occurrences[3]["id"])
    ann.patch(occurrences[0]["id"], {"subject": "Kick-off review"})
    wait_for(lambda: len(stack.crm.records(org)) == 2
             and exdate(3) in crm_record(stack, org, series["id"])["fields"]["Recurrence"], 45,
             what=f"the cancellation and the exception in the CRM; {stack.worker_log()}")

    control(stack, f"/users/{ann.account['id']}/invalidate-delta-tokens")  # the next round is a full resync
    ann.create({"subject": "After the resync", "start": {"dateTime": week(0, 15).strftime("%Y-%m-%dT%H:%M:%S"),
                                                          "timeZone": "Europe/Berlin"},
                "end": {"dateTime": week(0, 16).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "Europe/Berlin"}})
    wait_for(lambda: len(stack.crm.records(org)) == 3, 45, what=f"the event after the resync; {stack.worker_log()}")
    stack.request_full_sync(org, "ann", INTEGRATION, reason="again")  # and one more, asked for
    sentinel = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))  # behind the resync
    wait_for(lambda: len(ann.events()) == 3, 45, what=f"the sentinel in Outlook; {stack.worker_log()}")

    titles = sorted(r["fields"]["Event_Title"] for r in stack.crm.records(org))
    assert titles == ["After the resync", "Kick-off review", "Sentinel", "Weekly review"]
    assert crm_record(stack, org, series["id"])["fields"]["Recurrence"] == [*SERIES["Recurrence"], exdate(3)]
    assert sorted(e["subject"] for e in ann.events()) == ["After the resync", "Sentinel", "Weekly review"]
    assert [i["subject"] for i in instances(ann, master["id"])] == ["Kick-off review", "Weekly review", "Weekly review"]
    assert crm_record(stack, org, sentinel["id"])


def test_a_first_sync_brings_a_series_with_its_cancelled_and_edited_occurrences(calendar_stack):
    """The occurrences reach the engine while the series' CRM record is still being created: they wait for
    its id (series_backlog.py), then the EXDATE joins the series and the exception is tied to it."""
    stack = calendar_stack  # noqa: F811
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    master = ann.create({"subject": "Weekly review", "start": {"dateTime": f"{week(0):%Y-%m-%dT%H:%M:%S}",
                                                                "timeZone": "Europe/Berlin"},
                         "end": {"dateTime": f"{week(0, 11):%Y-%m-%dT%H:%M:%S}", "timeZone": "Europe/Berlin"},
                         "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                                        "range": {"type": "numbered", "startDate": MONDAY.isoformat(),
                                                  "numberOfOccurrences": 4}}})
    occurrences = all_four(ann, master["id"])
    ann.delete(occurrences[1]["id"])
    ann.patch(occurrences[2]["id"], {"subject": "Review, moved"})
    stack.configure(org, "ann", INTEGRATION, direction="two_way")
    stack.wait_synced(org, "ann", INTEGRATION)

    def series() -> dict | None:
        return next((r for r in stack.crm.records(org) if r["fields"].get("Recurrence")), None)

    record = wait_for(series, 45, what=f"the series in the CRM; {stack.worker_log()}")
    wait_for(lambda: len(stack.crm.records(org)) == 2, 45, what=f"the exception in the CRM; {stack.worker_log()}")
    [exception] = exceptions_of(stack, org, record["id"])
    assert exception["fields"]["Series_Id"] == record["id"]
    assert exdate(1) in crm_record(stack, org, record["id"])["fields"]["Recurrence"]
