"""The occurrences cancelled in an Outlook series, found by comparing its rule with its instances.

Graph v1.0 says nothing when one occurrence of a series is deleted: calendarView/delta sends the series
master again and no `@removed` for the occurrence ("no indication is given for a deleted occurrence",
microsoftgraph/microsoft-graph-docs pull 4501), a change notification names the master (issue 5520), and
/instances simply leaves the occurrence out (https://learn.microsoft.com/graph/api/event-list-instances;
issue 2963). The event's `cancelledOccurrences` property, which lists them, exists in beta only: it was
taken out of v1.0 (microsoftgraph/microsoft-graph-docs pull 14928). What v1.0 does offer is enough: the
master's `recurrence` says which dates the series has, and /instances lists every occurrence and
exception in a window with its `originalStart`; a date of the rule no instance started at is cancelled
(the approach of closeio/sync-engine pull 389).

One care: /instances lists an exception where it is now, not where it was. An exception moved out of the
window would look cancelled. Outlook keeps an exception between its neighbours ("an occurrence cannot be
moved to or before the day of the previous occurrence, and cannot be moved to or after the day of the
following occurrence": 400 ErrorOccurrenceCrossingBoundary, https://learn.microsoft.com/graph/api/event-update),
so a date is judged only when the occurrences before and after it are inside the window as well; the
first and last dates of the series judge by themselves.

Pure: the adapter reads the master and its instances, this says which dates are gone.
"""
from __future__ import annotations

import datetime as dt

from dateutil import rrule

from services.calendar_sync.mapping_common import InvalidEvent
from services.calendar_sync.mapping_graph import graph_to_canonical, instance_original_start
from services.calendar_sync.model import EventTime

_INSTANCE_TYPES = ("occurrence", "exception")


def cancelled_occurrences(master: dict, instances: list[dict], window_start: dt.datetime,
                          window_end: dt.datetime) -> list[EventTime]:
    """The original starts of the series' occurrences in [window_start, window_end) that `instances` (the
    series' /instances over that same window) does not hold, in order. An event that is no series, or a
    rule that cannot be read, cancels nothing."""
    event = graph_to_canonical(master).event
    lines = [line for line in event.recurrence if line.startswith("RRULE")] if event is not None else []
    if event is None or len(lines) != 1:
        return []
    all_day = event.start.all_day
    try:
        if all_day:  # dates: occurrences as naive midnights, the window as the days it covers in UTC
            rule = rrule.rrulestr(lines[0], dtstart=dt.datetime.combine(event.start.date, dt.time()))
            low, high = _naive(window_start), _naive(window_end)
        else:
            rule = rrule.rrulestr(lines[0], dtstart=event.start.date_time)
            low, high = window_start, window_end
        starts = rule.between(low, high, inc=True)
    except (ValueError, TypeError, OverflowError):
        return []
    listed = _original_starts(master, instances)
    if listed is None:
        return []
    held = {_key(s, all_day) for s in listed}
    gone = []
    for n, start in enumerate(starts):
        before = starts[n - 1] if n else rule.before(start)
        after = starts[n + 1] if n + 1 < len(starts) else rule.after(start)
        if (before or start) < low or (after or start) >= high or start >= high:
            continue  # an exception of this date may have moved out of the window: not judged
        if _key(start, all_day) not in held:
            gone.append(EventTime.on(start.date()) if all_day else EventTime.at(start, event.start.time_zone))
    return gone


def _original_starts(master: dict, instances: list[dict]) -> list[EventTime] | None:
    """Where each listed occurrence or exception started in the series (an occurrence without
    `originalStart` is where it always was: its start, read in UTC); None when one cannot be placed: its
    date would look cancelled, so nothing is judged."""
    found = []
    own = {k: master.get(k) for k in ("isAllDay", "originalStartTimeZone")}
    for raw in instances:
        if raw.get("type") not in _INSTANCE_TYPES:
            continue
        stamp, start = raw.get("originalStart"), raw.get("start") or {}
        if not stamp and raw.get("type") == "occurrence" and start.get("timeZone") == "UTC":
            stamp = f"{start.get('dateTime')}Z"
        try:
            found.append(instance_original_start(raw | own | {"originalStart": stamp}))
        except InvalidEvent:
            return None
    return found


def _key(value: dt.datetime | EventTime, all_day: bool) -> object:
    if isinstance(value, EventTime):
        return value.date if all_day else value.instant().astimezone(dt.UTC)
    return value.date() if all_day else value.astimezone(dt.UTC)


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)
