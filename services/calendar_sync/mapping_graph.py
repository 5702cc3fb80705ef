"""Microsoft Graph event resources <-> the canonical event, both directions side by side.

Reference: https://learn.microsoft.com/graph/api/resources/event

Reading (`graph_to_canonical`, an event as GET/calendarView/delta return it):
- A removed (`@removed`) or cancelled (`isCancelled`) event maps to `Mapped(event=None)`, as with Google.
- `start`/`end` are a wall-clock `dateTime` (no offset) in `timeZone`, which is UTC when the adapter asks
  for it (Prefer: outlook.timezone) and may be a Windows name. The instant is read there, then kept in
  the event's own zone, `originalStartTimeZone`/`originalEndTimeZone` (Windows names are converted, see
  mapping_graph_zones). An unknown original zone is reported and the event kept in UTC; an unknown
  `timeZone` leaves the wall-clock time meaning nothing: InvalidEvent.
- All-day (`isAllDay`) events are dates. Graph returns them at midnight, but in the zone asked for; a
  time other than midnight means they were rendered in another zone than their own, so the midnight is
  found again in the event's original zone (or, when that is unknown, rounded to the nearest midnight
  and reported): an all-day event never lands a day early or late.
- An HTML body becomes plain text (the CRM holds text).
- Graph holds one reminder (`isReminderOn`, `reminderMinutesBeforeStart`).
- Attendees of type "resource" (rooms) are reported, not synced; `status.response` maps to the canonical
  answer ("tentativelyAccepted" is tentative, "none"/"notResponded"/"organizer" are needs_action).

Writing (`canonical_to_graph`, a POST/PATCH body, without transactionId and extended properties, which
the adapter adds): `fit_graph` first cuts the event to what Graph holds, reporting each cut:
- one popup reminder (the one closest to the start);
- at most 500 attendees ("The maximum number of attendees included in an event ... is 500", Graph event
  resource, https://learn.microsoft.com/graph/api/resources/event);
- a recurrence Graph has a pattern for, without EXDATE/RDATE lines (mapping_graph_recurrence).
Descriptions are not cut: a 1 MB body is well inside Graph's request size (4 MB).
Attendee answers are not written: Graph keeps the invitees' own answers and ignores a written status.
All-day events are written as midnight to midnight in `all_day_zone` (UTC unless the adapter passes
the mailbox's zone), the same zone at both ends as Graph requires.
"""
from __future__ import annotations

import datetime as dt
import re

from services.calendar_sync.mapping_common import (
    InvalidEvent,
    Mapped,
    ProviderLimits,
    Report,
    all_day_range,
    attendee_or_none,
    fit,
    listed_dicts,
    parse_date_time,
    popup_minutes,
    timed_range,
)
from services.calendar_sync.mapping_graph_recurrence import NotHeld, graph_to_rrule, rrule_to_graph
from services.calendar_sync.mapping_graph_zones import graph_zone_name, iana_zone_name
from services.calendar_sync.model import CanonicalEvent, EventTime, known_zone
from services.mail_fetch.html_text import html_to_text

GRAPH_LIMITS = ProviderLimits(provider="Microsoft Graph", attendees_max=500, popup_reminders_max=1)

_RESPONSES = {"accepted": "accepted", "declined": "declined", "tentativelyAccepted": "tentative"}
_GRAPH_DATETIME = "%Y-%m-%dT%H:%M:%S"
# Graph writes seven fractional digits, Python reads six: the digits past the sixth go. Dropped with an
# empty replacement (matched behind a lookbehind), which the regex engine applies without calling back
# into Python: every Graph time of a first sync's thousands of events passes here.
_PAST_MICROSECONDS = re.compile(r"(?<=\.\d{6})\d+")


# --- Graph -> canonical -------------------------------------------------------------------------


def graph_to_canonical(raw: dict) -> Mapped:
    """A Graph event resource as the canonical event (None when removed or cancelled), with its report."""
    if "@removed" in raw or raw.get("isCancelled"):
        return Mapped(None)
    report = Report()
    start, end = _graph_range(raw, report)
    event = CanonicalEvent(
        title=raw.get("subject") or "",
        description=_graph_body_text(raw.get("body")),
        location=(raw.get("location") or {}).get("displayName") or "",
        start=start,
        end=end,
        reminders_minutes=_graph_reminders(raw, report),
        attendees=_graph_attendees(raw.get("attendees"), report),
        recurrence=_graph_recurrence(raw.get("recurrence"), start, report),
        ical_uid=raw.get("iCalUId") or None,
    )
    return report.mapped(event)


def graph_original_start(raw: dict) -> EventTime | None:
    """For an exception of a series (`type` exception, `seriesMasterId`): the start the occurrence had in
    the series, from `originalStart` (an instant, UTC: https://learn.microsoft.com/graph/api/resources/event),
    kept in the event's own zone; for an all-day series, that day in the event's zone. None for any other
    event. InvalidEvent when malformed."""
    if raw.get("type") != "exception" or not raw.get("seriesMasterId"):
        return None
    return instance_original_start(raw)


def instance_original_start(raw: dict) -> EventTime:
    """The start an occurrence or exception had in its series (`originalStart`, an instant), in the event's
    own zone, or that day for an all-day series. InvalidEvent when missing or malformed."""
    moment = parse_date_time(_to_microseconds(str(raw.get("originalStart") or "")), "originalStart")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    report = Report()
    zone_name = _original_zone(raw, "start", report) or "UTC"
    if raw.get("isAllDay"):
        zone = known_zone(zone_name) or dt.UTC
        return EventTime.on(moment.astimezone(zone).date())
    return EventTime.at(moment, zone_name)


def _graph_body_text(body: object) -> str:
    if not isinstance(body, dict):
        return ""
    content = str(body.get("content") or "")
    return html_to_text(content) if str(body.get("contentType", "text")).lower() == "html" else content


def _graph_wall_clock(value: object, where: str) -> tuple[dt.datetime, str | None]:
    """The `dateTime` as a naive wall-clock time (an offset, if one is given, is honoured) and its zone."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise InvalidEvent(f"{where}: no dateTime")
    return parse_date_time(_to_microseconds(str(value["dateTime"])), f"{where}.dateTime"), value.get("timeZone")


def _to_microseconds(text: str) -> str:
    """A date-time's fraction of a second cut to microseconds (Graph writes 100 ns ticks)."""
    return _PAST_MICROSECONDS.sub("", text)


def _graph_instant(value: object, where: str) -> dt.datetime:
    moment, zone_name = _graph_wall_clock(value, where)
    if moment.tzinfo is not None:
        return moment
    zone = known_zone(iana_zone_name(zone_name or "UTC"))
    if zone is None:
        raise InvalidEvent(f"{where}.timeZone {zone_name!r} is unknown, so {moment.isoformat()} is no instant")
    return moment.replace(tzinfo=zone)


def _graph_range(raw: dict, report: Report) -> tuple[EventTime, EventTime]:
    if raw.get("isAllDay"):
        first = _all_day_date(raw, "start", report)
        return all_day_range(first, _all_day_date(raw, "end", report), report)
    start = _graph_time(raw, "start", report)
    return timed_range(start, _graph_time(raw, "end", report), report)


def _original_zone(raw: dict, which: str, report: Report) -> str | None:
    """The IANA name of the zone the event was set in, None (reported) when Graph names an unknown one."""
    original = raw.get(f"original{which.capitalize()}TimeZone") or (raw.get(which) or {}).get("timeZone")
    iana = iana_zone_name(original)
    if original and iana is None:
        report.problems.append(f"original{which.capitalize()}TimeZone: unknown time zone {original!r}, kept in UTC")
    return iana


def _graph_time(raw: dict, which: str, report: Report) -> EventTime:
    return EventTime.at(_graph_instant(raw.get(which), which), _original_zone(raw, which, report) or "UTC")


def _all_day_date(raw: dict, which: str, report: Report) -> dt.date:
    moment, _ = _graph_wall_clock(raw.get(which), which)
    if moment.tzinfo is None and moment.time() == dt.time(0, 0):
        return moment.date()
    original = known_zone(_original_zone(raw, which, report))
    if original is not None:
        return _graph_instant(raw.get(which), which).astimezone(original).date()
    nearest = (moment.replace(tzinfo=None) + dt.timedelta(hours=12)).date()
    report.problems.append(f"{which}: all-day at {moment.isoformat()} in an unknown zone: taken as {nearest}")
    return nearest


def _graph_reminders(raw: dict, report: Report) -> tuple[int, ...]:
    if not raw.get("isReminderOn"):
        return ()
    minutes = popup_minutes(raw.get("reminderMinutesBeforeStart"), "reminderMinutesBeforeStart", report)
    return () if minutes is None else (minutes,)


def _graph_attendees(items: object, report: Report) -> tuple:
    attendees = []
    for where, item in listed_dicts(items, "attendees", report):
        address = item.get("emailAddress") or {}
        if item.get("type") == "resource":
            report.unmapped.append(f"{where}: resource {address.get('name') or address.get('address')}: not synced")
            continue
        attendee = attendee_or_none(
            address.get("address"), where, report,
            name=_attendee_name(address),
            optional=item.get("type") == "optional",
            response=_RESPONSES.get((item.get("status") or {}).get("response"), "needs_action"),
        )
        if attendee is not None:
            attendees.append(attendee)
    return tuple(attendees)


def _attendee_name(address: dict) -> str:
    """Graph repeats the address as the name when none was given: that is no name."""
    name = str(address.get("name") or "").strip()
    return "" if name.lower() == str(address.get("address") or "").strip().lower() else name


def _graph_recurrence(recurrence: object, start: EventTime, report: Report) -> tuple[str, ...]:
    if not isinstance(recurrence, dict):
        return ()
    try:
        return (graph_to_rrule(recurrence, start),)
    except NotHeld as reason:
        report.problems.append(f"recurrence: {reason}: not synced")
    except (KeyError, TypeError, ValueError) as reason:
        report.problems.append(f"recurrence: malformed ({type(reason).__name__}: {reason}): not synced")
    return ()


# --- canonical -> Graph -------------------------------------------------------------------------


def fit_graph(event: CanonicalEvent, limits: ProviderLimits = GRAPH_LIMITS, all_day_zone: str = "UTC") -> Mapped:
    """The event as Graph can hold it; `unmapped` names each cut (the adapter reports them)."""
    within = fit(event, limits)
    held = within.event
    assert held is not None
    pattern, not_held = rrule_to_graph(held.recurrence, held.start, _recurrence_zone(held, all_day_zone))
    if pattern is None and held.recurrence:
        held = held.model_copy(update={"recurrence": ()})
    elif not_held:
        held = held.model_copy(update={"recurrence": tuple(r for r in held.recurrence if r.startswith("RRULE"))})
    return Mapped(held, tuple(dict.fromkeys(within.unmapped + tuple(not_held))), within.problems)


def canonical_to_graph(event: CanonicalEvent, limits: ProviderLimits = GRAPH_LIMITS, all_day_zone: str = "UTC") -> dict:
    """A Graph event POST/PATCH body for the event, cut to what Graph holds (see `fit_graph`)."""
    held = fit_graph(event, limits, all_day_zone).event
    assert held is not None
    pattern, _ = rrule_to_graph(held.recurrence, held.start, _recurrence_zone(held, all_day_zone))
    return {
        "subject": held.title,
        "body": {"contentType": "text", "content": held.description},
        "start": _graph_time_body(held.start, all_day_zone),
        "end": _graph_time_body(held.end, all_day_zone),
        "isAllDay": held.start.all_day,
        "location": {"displayName": held.location},
        "attendees": [
            {"emailAddress": {"address": a.email, **({"name": a.name} if a.name else {})},
             "type": "optional" if a.optional else "required"}
            for a in held.attendees
        ],
        "isReminderOn": bool(held.reminders_minutes),
        "reminderMinutesBeforeStart": held.reminders_minutes[0] if held.reminders_minutes else 0,
        "recurrence": pattern,
    }


def _recurrence_zone(event: CanonicalEvent, all_day_zone: str) -> str:
    return all_day_zone if event.start.all_day else graph_zone_name(event.start.time_zone or "UTC")


def _graph_time_body(value: EventTime, all_day_zone: str) -> dict:
    if value.date is not None:
        return {"dateTime": dt.datetime.combine(value.date, dt.time()).strftime(_GRAPH_DATETIME), "timeZone": all_day_zone}
    assert value.date_time is not None
    return {"dateTime": value.date_time.strftime(_GRAPH_DATETIME), "timeZone": graph_zone_name(value.time_zone or "UTC")}
