"""Recurring series in Graph: a seriesMaster expanded into occurrences, with its exceptions and cancellations.

As Outlook keeps them (https://learn.microsoft.com/graph/api/resources/event, properties `type`,
`seriesMasterId`, `originalStart`; https://learn.microsoft.com/graph/api/event-list-instances):
- an occurrence is the series at one of its dates; its id is the master's id and the occurrence's original
  start (opaque to clients: Outlook's are base64, the sandbox's `{masterId}_{yyyyMMddTHHmmss}`);
- updating an occurrence makes it an `exception` with the same id, its own properties and `originalStart`;
  deleting one cancels it: it leaves calendarView and /instances, and the series master is what changed
  (a change notification names the master: microsoftgraph/microsoft-graph-docs issue 5520);
- the master keeps both, under "_exceptions" (original stamp -> the exception's record) and "_cancelled"
  (original stamps); an exception whose original date the pattern no longer has is not shown.
Pure functions over the stored records, like event_model.py.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from sandbox.microsoft import recurrence as recurrences
from sandbox.microsoft.event_model import GRAPH_DATETIME, aware, render, render_time
from sandbox.microsoft.timezones import zone

_STAMP = re.compile(r"\d{8}T\d{6}")
_SERIES_ONLY = ("recurrence", "_exceptions", "_cancelled", "transactionId")


class Instance(NamedTuple):
    """One instance of an event in a window: the event itself (singleInstance), an occurrence or an exception."""

    id: str
    start: dt.datetime
    end: dt.datetime
    kind: str = "singleInstance"
    stamp: str | None = None


def occurrence_id(master_id: str, stamp: str) -> str:
    return f"{master_id}_{stamp}"


def split_occurrence_id(event_id: str) -> tuple[str, str] | None:
    """(master id, original-start stamp) for an occurrence id; None for any other id."""
    master_id, sep, stamp = event_id.rpartition("_")
    return (master_id, stamp) if sep and _STAMP.fullmatch(stamp) else None


def original_start(record: dict, stamp: str) -> dt.datetime | None:
    """The original start an occurrence stamp names, if the master's pattern has an occurrence there."""
    if not record.get("recurrence"):
        return None
    moment = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=zone(record["start"]["timeZone"]))
    if not recurrences.occurs_at(record["recurrence"], aware(record["start"]), moment):
        return None
    return moment


def instances(record: dict, window_start: dt.datetime, window_end: dt.datetime) -> list[Instance]:
    """Each instance of the event overlapping [window_start, window_end): the event itself, or the series'
    live occurrences and exceptions, by start."""
    start, end = aware(record["start"]), aware(record["end"])
    duration = end - start
    starts = recurrences.starts_in_window(record.get("recurrence"), start, duration, window_start, window_end)
    if not record.get("recurrence"):
        return [Instance(record["id"], start, end)] if starts else []
    cancelled, exceptions = set(record.get("_cancelled", ())), record.get("_exceptions", {})
    found = []
    for moment in starts:
        stamp = moment.strftime("%Y%m%dT%H%M%S")
        if stamp not in cancelled and stamp not in exceptions:
            found.append(Instance(occurrence_id(record["id"], stamp), moment, moment + duration, "occurrence", stamp))
    for stamp, exception in exceptions.items():
        moved_start, moved_end = aware(exception["start"]), aware(exception["end"])
        if moved_start < window_end and moved_end > window_start and original_start(record, stamp) is not None:
            found.append(Instance(exception["id"], moved_start, moved_end, "exception", stamp))
    found.sort(key=lambda instance: instance.start)
    return found


def crosses_neighbours(master: dict, stamp: str, moved: dict) -> bool:
    """Whether an occurrence moved to `moved` (a start as written) leaves the days between its neighbours:
    "an occurrence cannot be moved to or before the day of the previous occurrence, and cannot be moved to
    or after the day of the following occurrence" (400 ErrorOccurrenceCrossingBoundary,
    https://learn.microsoft.com/graph/api/event-update). Days in the series' zone; the neighbours are the
    rule's (sandbox choice: whether a cancelled neighbour frees its day is not documented)."""
    original = original_start(master, stamp)
    if original is None:
        return False
    before, after = recurrences.neighbours(master["recurrence"], aware(master["start"]), original)
    day = aware(moved).astimezone(original.tzinfo).date()
    return (before is not None and day <= before.date()) or (after is not None and day >= after.date())


def occurrence_record(master: dict, stamp: str) -> dict:
    """The record of one unmodified occurrence: the master's data at the occurrence's own times."""
    original = original_start(master, stamp)
    assert original is not None
    duration = aware(master["end"]) - aware(master["start"])
    local = {"timeZone": master["start"]["timeZone"]}
    record = {k: v for k, v in master.items() if k not in _SERIES_ONLY}
    record.update(id=occurrence_id(master["id"], stamp),
                  start=dict(local, dateTime=original.strftime(GRAPH_DATETIME)),
                  end=dict(local, dateTime=(original + duration).strftime(GRAPH_DATETIME)))
    return record


def instance_record(master: dict, instance: Instance) -> dict:
    if instance.kind == "exception":
        return master["_exceptions"][instance.stamp]
    return occurrence_record(master, instance.stamp)


def render_instance(master: dict, instance: Instance, *, tz_name: str = "UTC",
                    expand_ids: list[str] | None = None) -> dict:
    """One instance as calendarView, /instances and a GET by its id return it."""
    if instance.kind == "singleInstance":
        return render(master, tz_name=tz_name, expand_ids=expand_ids)
    out = render(instance_record(master, instance), tz_name=tz_name, expand_ids=expand_ids)
    original = original_start(master, instance.stamp)
    out.update(type=instance.kind, seriesMasterId=master["id"], recurrence=None,
               originalStart=original.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if original else None)
    return out


def render_bare_occurrence(master: dict, instance: Instance, *, tz_name: str = "UTC") -> dict:
    """An occurrence as calendarView/delta lists it: only its ids, type and times; the rest is the master's
    (microsoftgraph/microsoft-graph-docs issue 7632 and microsoft-graph-docs-contrib issue 34)."""
    all_day = bool(master.get("isAllDay"))
    local = {"timeZone": master["start"]["timeZone"]}
    return {
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": f'W/"{master["changeKey"]}"',
        "id": instance.id,
        "seriesMasterId": master["id"],
        "type": "occurrence",
        "start": render_time(dict(local, dateTime=instance.start.strftime(GRAPH_DATETIME)), all_day, tz_name),
        "end": render_time(dict(local, dateTime=instance.end.strftime(GRAPH_DATETIME)), all_day, tz_name),
    }
