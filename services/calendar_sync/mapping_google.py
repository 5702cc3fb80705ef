"""Google Calendar v3 event resources <-> the canonical event, both directions side by side.

Reference: https://developers.google.com/calendar/api/v3/reference/events

Reading (`google_to_canonical`, an events.get/list resource):
- A cancelled event maps to `Mapped(event=None)`: a deleted event, or a deleted occurrence, may carry
  nothing but its id, so there is nothing to build a canonical event from. The engine treats it as a
  delete (ProviderEvent.event None).
- An untitled event has the title "" (the CRM mapping shows it as "Not specified").
- `date` start/end are all-day; Google's end date is exclusive, as is the canonical one, so dates pass
  through untouched. `dateTime` start/end keep their `timeZone`; without one, the calendar's zone when
  the adapter passes it, else UTC (the offset fixes the instant either way).
- Popup reminders are kept, every one; email reminders and `useDefault` (the calendar's defaults,
  which the event does not list) cannot be held by the CRM mapping and are reported.
- Resource attendees (rooms) are not people: reported, not synced. `attendeesOmitted` means the list is
  incomplete, reported as a problem.

Writing (`canonical_to_google`, an events.insert/patch body): every synced field is written, empty ones
too (a patch must clear what the CRM cleared); no id and no extendedProperties, which the adapter adds.
`fit_google` first cuts the event to what Google holds, reporting each cut:
- at most 5 override reminders of 0..40320 minutes (events reference, `reminders.overrides`);
- a description of at most 8,192 characters: Google does not document the figure in the API reference;
  it is the limit calendar vendors report ("approximately 8,192 characters", Nylas: Event Description
  Limits in Google Calendar and Microsoft Exchange; "the documented limit of 8K characters",
  github.com/rjhorniii/ical2org issue 16), and over-long values are refused with "A provided value exceeds
  the allowed size limit" (github.com/derekantrican/GAS-ICS-Sync issue 271);
- at most 500 attendees: "a one-time event can have a maximum of 500 invitees" (Google Workspace Admin
  Help, Invite groups to calendar events, support.google.com/a/answer/172013).
Both figures are settings (`ProviderLimits`): pass other ones where Google's change.
"""
from __future__ import annotations

import datetime as dt

from services.calendar_sync.mapping_common import (
    InvalidEvent,
    Mapped,
    ProviderLimits,
    Report,
    all_day_range,
    attendee_or_none,
    event_time,
    fit,
    listed_dicts,
    parse_date,
    parse_date_time,
    popup_reminders,
    timed_range,
)
from services.calendar_sync.model import CanonicalEvent, EventTime

GOOGLE_LIMITS = ProviderLimits(
    provider="Google Calendar",
    description_max_chars=8_192,
    attendees_max=500,
    popup_reminders_max=5,
    reminder_minutes_max=40_320,
)

_RESPONSES = {"needsAction": "needs_action", "accepted": "accepted", "declined": "declined", "tentative": "tentative"}
_GOOGLE_RESPONSES = {value: key for key, value in _RESPONSES.items()}


# --- Google -> canonical ------------------------------------------------------------------------


def google_to_canonical(raw: dict, calendar_time_zone: str | None = None) -> Mapped:
    """A Calendar v3 event resource as the canonical event (None when cancelled), with its report."""
    if raw.get("status") == "cancelled":
        return Mapped(None)
    report = Report()
    start, end = _google_range(raw.get("start"), raw.get("end"), calendar_time_zone, report)
    event = CanonicalEvent(
        title=raw.get("summary") or "",
        description=raw.get("description") or "",
        location=raw.get("location") or "",
        start=start,
        end=end,
        reminders_minutes=_google_reminders(raw.get("reminders"), report),
        attendees=_google_attendees(raw, report),
        recurrence=tuple(line for line in raw.get("recurrence") or () if isinstance(line, str)),
        ical_uid=raw.get("iCalUID") or None,
    )
    return report.mapped(event)


def google_original_start(raw: dict, calendar_time_zone: str | None = None) -> EventTime | None:
    """For an exception of a recurring series (an instance with `recurringEventId`), the start it had in
    the series (`originalStartTime`, immutable; a cancelled exception may carry nothing else); None for
    any other event. InvalidEvent when malformed."""
    original = raw.get("originalStartTime")
    if not raw.get("recurringEventId") or not isinstance(original, dict):
        return None
    if original.get("date"):
        return EventTime.on(parse_date(original["date"], "originalStartTime.date"))
    if not original.get("dateTime"):
        raise InvalidEvent("originalStartTime: neither date nor dateTime")
    return _google_time(original, "originalStartTime", calendar_time_zone, Report())


def _google_range(start: object, end: object, calendar_zone: str | None, report: Report) -> tuple[EventTime, EventTime]:
    if not isinstance(start, dict) or not (start.get("date") or start.get("dateTime")):
        raise InvalidEvent("start: neither date nor dateTime")
    end = end if isinstance(end, dict) and (end.get("date") or end.get("dateTime")) else None
    if start.get("date"):
        first = parse_date(start["date"], "start.date")
        if end is None or not end.get("date"):
            report.problems.append("end: missing or not a date for an all-day start: one day")
            return all_day_range(first, first + dt.timedelta(days=1), report)
        return all_day_range(first, parse_date(end["date"], "end.date"), report)
    begin = _google_time(start, "start", calendar_zone, report)
    if end is None or not end.get("dateTime"):
        report.problems.append("end: missing or not a dateTime for a timed start: set to the start")
        return begin, begin
    return timed_range(begin, _google_time(end, "end", calendar_zone, report), report)


def _google_time(value: dict, where: str, calendar_zone: str | None, report: Report) -> EventTime:
    moment = parse_date_time(value["dateTime"], f"{where}.dateTime")
    return event_time(moment, value.get("timeZone") or calendar_zone, f"{where}.timeZone", report)


def _google_reminders(reminders: object, report: Report) -> tuple[int, ...]:
    if not isinstance(reminders, dict):
        return ()
    if reminders.get("useDefault"):
        report.unmapped.append("reminders.useDefault: the calendar's default reminders are not synced")
    return popup_reminders(reminders.get("overrides"), "reminders.overrides", report)


def _google_attendees(raw: dict, report: Report) -> tuple:
    if raw.get("attendeesOmitted"):
        report.problems.append("attendeesOmitted: Google listed only some attendees")
    attendees = []
    for where, item in listed_dicts(raw.get("attendees"), "attendees", report):
        if item.get("resource"):
            report.unmapped.append(f"{where}: resource {item.get('displayName') or item.get('email')}: not synced")
            continue
        attendee = attendee_or_none(
            item.get("email"), where, report,
            name=item.get("displayName") or "",
            optional=bool(item.get("optional")),
            response=_RESPONSES.get(item.get("responseStatus"), "needs_action"),
        )
        if attendee is not None:
            attendees.append(attendee)
    return tuple(attendees)


# --- canonical -> Google ------------------------------------------------------------------------


def fit_google(event: CanonicalEvent, limits: ProviderLimits = GOOGLE_LIMITS) -> Mapped:
    """The event as Google can hold it; `unmapped` names each cut (the adapter reports them)."""
    return fit(event, limits)


def canonical_to_google(event: CanonicalEvent, limits: ProviderLimits = GOOGLE_LIMITS) -> dict:
    """An events.insert/patch body for the event, cut to what Google holds (see `fit_google`)."""
    held = fit_google(event, limits).event
    assert held is not None
    body: dict = {
        "summary": held.title,
        "description": held.description,
        "location": held.location,
        "start": _google_time_body(held.start),
        "end": _google_time_body(held.end),
        "reminders": {
            "useDefault": False,
            "overrides": [{"method": "popup", "minutes": minutes} for minutes in held.reminders_minutes],
        },
        "attendees": [_google_attendee_body(attendee) for attendee in held.attendees],
        "recurrence": list(held.recurrence),
    }
    if held.ical_uid:
        body["iCalUID"] = held.ical_uid
    return body


def _google_time_body(value: EventTime) -> dict:
    if value.all_day:
        return {"date": value.rfc3339()}
    return {"dateTime": value.rfc3339(), "timeZone": value.time_zone}


def _google_attendee_body(attendee) -> dict:
    body = {"email": attendee.email, "optional": attendee.optional,
            "responseStatus": _GOOGLE_RESPONSES[attendee.response]}
    if attendee.name:
        body["displayName"] = attendee.name
    return body
