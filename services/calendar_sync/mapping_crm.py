"""CRM event records <-> the canonical event, both directions side by side.

The reference CRM is schema-less; its Events module uses Zoho-style field names:

| field | value |
|---|---|
| Event_Title | str; "Not specified" (UNTITLED) stands for an untitled event |
| Start_DateTime, End_DateTime | RFC 3339 with offset, e.g. "2026-11-24T10:00:00+01:00"; all-day: "YYYY-MM-DD" |
| All_day | bool; when absent, an event whose start is a bare date is all-day |
| Time_Zone | IANA name of the zone the event was set in, e.g. "Europe/Berlin" ("" for all-day) |
| Venue | str |
| Description | str (plain text) |
| Participants | [{"type": "email"/"contact"/"user", "Email", "name", "status", "optional": bool}], status one of needs_action, accepted, declined, tentative |
| Reminders | [{"minutes": int, "method": "popup"/"email"}] |
| Recurrence | RFC 5545 lines: "RRULE:...", "EXDATE:...", "RDATE:..." |
| ICal_UID | str, the meeting's iCalendar UID when it came from a provider |
| Series_Id, Original_Start | an exception of a recurring series: the series' record id, and the start the occurrence had in it (RFC 3339 or a date); set by calendar_sync, not part of the canonical event. A cancelled occurrence is an EXDATE line of the series' Recurrence instead |

Decisions:
- All-day events are stored as dates, the end date inclusive (an event on 1 May has Start 1 May and
  End 1 May, as a CRM user reads it); the canonical end is exclusive, so 1 day is added and taken back
  here and nowhere else. Dates are read from the text as written: "2026-05-01T00:00:00+14:00" is
  1 May, never converted through UTC. An end written as midnight after the start day is read as an
  exclusive end ("2026-05-02T00:00:00+02:00" ends a 1 May event).
- "Not specified" and an empty title both mean untitled: canonically "", so an untitled Google event
  that arrives as "Not specified" and comes back from the CRM does not set Google's title to the text
  "Not specified" (that would be a change, written back, an echo).
- An end before the start is clamped to the start (one day for all-day events) and reported: the event
  still syncs, and the report says what was fixed.
- Email reminders and participants without an address cannot be held by providers: reported as
  unmapped. When writing back, `canonical_to_crm(event, current)` keeps them from the current record,
  with each participant's type, so a provider update never strips the CRM of what it alone holds.
"""
from __future__ import annotations

import datetime as dt

from services.calendar_sync.mapping_common import (
    InvalidEvent,
    Mapped,
    Report,
    all_day_range,
    attendee_or_none,
    event_time,
    listed_dicts,
    parse_date,
    parse_date_time,
    popup_reminders,
    timed_range,
)
from services.calendar_sync.model import RULE_KINDS, UNTITLED, Attendee, CanonicalEvent, EventTime

_STATUSES = ("needs_action", "accepted", "declined", "tentative")
_DAY = dt.timedelta(days=1)


# --- CRM -> canonical ---------------------------------------------------------------------------


def crm_to_canonical(fields: dict) -> Mapped:
    """A CRM event record's fields as the canonical event, with what providers cannot hold."""
    report = Report()
    start, end = _crm_range(fields, report)
    title = str(fields.get("Event_Title") or "").strip()
    event = CanonicalEvent(
        title="" if title == UNTITLED else title,
        description=str(fields.get("Description") or ""),
        location=str(fields.get("Venue") or ""),
        start=start,
        end=end,
        reminders_minutes=popup_reminders(fields.get("Reminders"), "Reminders", report),
        attendees=_crm_attendees(fields.get("Participants"), report),
        recurrence=_crm_recurrence(fields.get("Recurrence"), report),
        ical_uid=str(fields.get("ICal_UID") or "").strip() or None,
    )
    return report.mapped(event)


def _is_bare_date(text: object) -> bool:
    return isinstance(text, str) and len(text.strip()) == 10


def _crm_range(fields: dict, report: Report) -> tuple[EventTime, EventTime]:
    start_text, end_text = fields.get("Start_DateTime"), fields.get("End_DateTime")
    if not start_text:
        raise InvalidEvent("Start_DateTime: missing")
    all_day = fields.get("All_day")
    if isinstance(all_day, str):
        all_day = all_day.strip().lower() in ("true", "1", "yes")
    if all_day is None:
        all_day = _is_bare_date(start_text)
    if all_day:
        first = parse_date(start_text, "Start_DateTime")
        if not end_text:
            return all_day_range(first, first + _DAY, report)
        return all_day_range(first, _exclusive_end_date(end_text, first), report)
    zone = str(fields.get("Time_Zone") or "").strip() or None
    start = event_time(parse_date_time(start_text, "Start_DateTime"), zone, "Time_Zone", report)
    if not end_text:
        report.problems.append("End_DateTime: missing, set to the start")
        return start, start
    end = event_time(parse_date_time(end_text, "End_DateTime"), zone, "Time_Zone", report)
    return timed_range(start, end, report)


def _exclusive_end_date(end_text: str, first: dt.date) -> dt.date:
    """The CRM's inclusive last day, as the exclusive end; a midnight after the first day is already exclusive."""
    last = parse_date(end_text, "End_DateTime")
    at_midnight = not _is_bare_date(end_text) and parse_date_time(end_text, "End_DateTime").time() == dt.time(0, 0)
    return last if at_midnight and last > first else last + _DAY


def _crm_attendees(participants: object, report: Report) -> tuple[Attendee, ...]:
    attendees = []
    for where, item in listed_dicts(participants, "Participants", report):
        status = item.get("status") or "needs_action"
        if status not in _STATUSES:
            report.problems.append(f"{where}: unknown status {status!r}, taken as needs_action")
            status = "needs_action"
        attendee = attendee_or_none(item.get("Email"), where, report, name=str(item.get("name") or ""),
                                    optional=bool(item.get("optional")), response=status)
        if attendee is not None:
            attendees.append(attendee)
    return tuple(attendees)


def _crm_recurrence(lines: object, report: Report) -> tuple[str, ...]:
    if isinstance(lines, str):  # one text of lines rather than a list
        lines = lines.splitlines()
    kept = []
    for index, line in enumerate(lines if isinstance(lines, list | tuple) else ()):
        name = str(line).strip().split(":", 1)[0].split(";", 1)[0].upper()
        if name in RULE_KINDS:
            kept.append(str(line))
        else:
            report.problems.append(f"Recurrence[{index}]: {str(line)[:80]!r} is not an RRULE/EXRULE/RDATE/EXDATE line: skipped")
    return tuple(kept)


def crm_occurrence(fields: dict) -> tuple[str, EventTime] | None:
    """For a CRM event that is an exception of a recurring series: the series' record id and the start the
    occurrence had in it (Series_Id, Original_Start); None for any other event. InvalidEvent when the
    original start is malformed or missing."""
    series_id = str(fields.get("Series_Id") or "").strip()
    if not series_id:
        return None
    original = fields.get("Original_Start")
    if _is_bare_date(original):
        return series_id, EventTime.on(parse_date(original, "Original_Start"))
    moment = parse_date_time(original, "Original_Start")
    if moment.tzinfo is None:
        raise InvalidEvent(f"Original_Start {original!r} has no UTC offset")
    return series_id, EventTime.at(moment, str(fields.get("Time_Zone") or "").strip() or None)


# --- canonical -> CRM ---------------------------------------------------------------------------


def canonical_to_crm(event: CanonicalEvent, current: dict | None = None) -> dict:
    """The CRM fields for the event: every synced field, cleared ones too (an upsert merges fields).

    `current`, the record's fields as they are, lends what the canonical event does not hold: each
    participant's type, email reminders, participants without an address.
    """
    current = current or {}
    fields = {
        "Event_Title": event.title or UNTITLED,
        "All_day": event.start.all_day,
        "Start_DateTime": event.start.rfc3339(),
        "End_DateTime": _crm_end(event),
        "Time_Zone": event.start.time_zone or "",
        "Venue": event.location,
        "Description": event.description,
        "Participants": _crm_participants(event.attendees, current.get("Participants") or ()),
        "Reminders": [{"minutes": minutes, "method": "popup"} for minutes in event.reminders_minutes]
        + [r for r in current.get("Reminders") or () if isinstance(r, dict) and r.get("method", "popup") != "popup"],
        "Recurrence": list(event.recurrence),
    }
    if event.ical_uid:
        fields["ICal_UID"] = event.ical_uid
    return fields


_CRM_FIELDS_OF = {
    # A time range is one unit: all-day or not, its zone and both ends are written together.
    "start": ("All_day", "Start_DateTime", "End_DateTime", "Time_Zone"),
    "end": ("All_day", "Start_DateTime", "End_DateTime", "Time_Zone"),
    "title": ("Event_Title",),
    "description": ("Description",),
    "location": ("Venue",),
    "attendees": ("Participants",),
    "reminders_minutes": ("Reminders",),
    "recurrence": ("Recurrence",),
    "ical_uid": ("ICal_UID",),
}


def changed_crm_fields(before: CanonicalEvent | None, after: CanonicalEvent, current: dict | None = None) -> dict:
    """The CRM fields of `after` (as `canonical_to_crm` writes them) for what differs from `before`, the
    event as the CRM holds it to our knowledge; every field when `before` is None.

    A writeback that sends only these cannot undo a CRM edit we have not heard of yet: an upsert
    merges the fields it carries and leaves the others as the CRM has them.
    """
    fields = canonical_to_crm(after, current)
    if before is None:
        return fields
    names = [name for name in _CRM_FIELDS_OF if getattr(before, name) != getattr(after, name)]
    return {field: fields[field] for name in names for field in _CRM_FIELDS_OF[name] if field in fields}


def _crm_end(event: CanonicalEvent) -> str:
    """All-day: the inclusive last day."""
    if event.end.date is not None and event.start.date is not None:
        return max(event.start.date, event.end.date - _DAY).isoformat()
    return event.end.rfc3339()


def _crm_participants(attendees: tuple[Attendee, ...], current: object) -> list[dict]:
    current = [p for p in current if isinstance(p, dict)]
    current_by_email = {str(p.get("Email") or "").strip().lower(): p for p in current}
    participants = [
        {
            "type": (current_by_email.get(a.email) or {}).get("type") or "email",
            "Email": a.email,
            "name": a.name,
            "status": a.response,
            "optional": a.optional,
        }
        for a in attendees
    ]
    without_address = [p for p in current if "@" not in str(p.get("Email") or "")]
    return participants + without_address
