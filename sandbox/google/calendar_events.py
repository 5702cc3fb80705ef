"""Validation and normalisation of Calendar v3 event bodies, as the real API applies them on write.

Everything here is pure: a body goes in, the cleaned writable fields come out, or a `ProviderError`
carrying Google's status and error body is raised. Reference for the fields:
https://developers.google.com/calendar/api/v3/reference/events
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.errors import google_error

# Client-supplied ids: "characters allowed in the ID are those used in base32hex encoding, i.e. lowercase
# letters a-v and digits 0-9 ... the length of the ID must be between 5 and 1024 characters"
# (https://developers.google.com/calendar/api/v3/reference/events/insert, field `id`).
EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")

# Fields a client may write; read-only ones (etag, created, updated, htmlLink, creator, organizer...) are
# ignored on input as Google does (https://developers.google.com/calendar/api/v3/reference/events).
WRITABLE_FIELDS = frozenset(
    {
        "summary", "description", "location", "colorId", "start", "end", "endTimeUnspecified",
        "recurrence", "attendees", "reminders", "extendedProperties", "transparency", "visibility",
        "status", "guestsCanInviteOthers", "guestsCanModify", "guestsCanSeeOtherGuests",
        "anyoneCanAddSelf", "source", "sequence", "iCalUID", "eventType", "attachments",
    }
)
EVENT_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})
RESPONSE_STATUSES = frozenset({"needsAction", "declined", "tentative", "accepted"})
REMINDER_METHODS = frozenset({"email", "popup"})
MAX_REMINDER_OVERRIDES = 5
MAX_REMINDER_MINUTES = 40320
# extendedProperties limits (https://developers.google.com/calendar/api/guides/extended-properties):
# keys up to 44 characters (longer ones are dropped), values up to 1024 (longer ones truncated),
# at most 300 properties and 32 kB in all per event.
MAX_PROPERTY_KEY = 44
MAX_PROPERTY_VALUE = 1024
MAX_PROPERTIES = 300
MAX_PROPERTIES_BYTES = 32 * 1024


def invalid(message: str, location: str | None = None, reason: str = "invalid", code: int = 400):
    return google_error(code, reason, message, location=location, location_type="parameter" if location else None)


def check_event_id(event_id: Any) -> str:
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise invalid("Invalid resource id value.", "id")
    return event_id


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def parse_timestamp(value: str, name: str) -> datetime:
    """An RFC 3339 query parameter such as timeMin: the offset is mandatory (events.list reference)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        raise invalid(f"Invalid value for: {name}", name, reason="badRequest")
    return parsed


def format_datetime(moment: datetime) -> str:
    """Google prints whole seconds and `Z` for UTC: 2024-01-01T10:00:00Z, 2024-01-01T11:00:00+01:00."""
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@lru_cache(maxsize=64)
def _utc_second(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def format_instant_ms(micros: int) -> str:
    """`updated`/`created`: UTC with milliseconds, as in 2024-05-14T09:32:10.123Z."""
    return f"{_utc_second(micros // 1_000_000)}.{(micros // 1000) % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class EventTime:
    """A start or end: a date for all-day events, else an aware datetime plus the zone it is kept in."""

    value: date | datetime
    all_day: bool
    zone_name: str | None

    def as_utc(self) -> datetime:
        """The instant used for time-window filtering; all-day dates count from midnight UTC."""
        if self.all_day:
            return datetime(self.value.year, self.value.month, self.value.day, tzinfo=UTC)
        return self.value  # type: ignore[return-value]

    def to_json(self) -> dict:
        if self.all_day:
            body = {"date": self.value.isoformat()}
        else:
            body = {"dateTime": format_datetime(self.value)}  # type: ignore[arg-type]
        if self.zone_name:
            body["timeZone"] = self.zone_name
        return body


def parse_event_time(raw: Any, which: str, calendar_zone: str, recurring: bool) -> EventTime:
    """One of start/end. Errors as the API gives them (events.insert reference, `start`/`end`)."""
    day, moment_text = (raw.get("date"), raw.get("dateTime")) if isinstance(raw, dict) else (None, None)
    if not (day or moment_text):
        raise invalid(f"Missing {which} time.", which, reason="required")
    zone_name = raw.get("timeZone")
    named = zone(zone_name) if zone_name is not None else None
    if zone_name is not None and named is None:
        raise invalid(f"Invalid time zone definition for {which} time.", f"{which}.timeZone")
    if day:
        if moment_text:
            raise invalid(f"Invalid {which} time.", which)
        try:
            return EventTime(date.fromisoformat(day), True, zone_name)
        except (TypeError, ValueError):
            raise invalid(f"Invalid {which} time.", f"{which}.date") from None
    try:
        moment = datetime.fromisoformat(moment_text)
    except (TypeError, ValueError):
        raise invalid(f"Invalid {which} time.", f"{which}.dateTime") from None
    # A recurring event needs a named zone to expand in, whatever offset its dateTime carries; a single
    # event needs one only when its dateTime has no offset.
    if zone_name is None and (moment.tzinfo is None or recurring):
        raise invalid(f"Missing time zone definition for {which} time.", f"{which}.timeZone", reason="required")
    tz = named or zone(calendar_zone) or UTC
    if moment.tzinfo is None:  # one replace: each makes a new datetime, a microsecond with a zone
        moment = moment.replace(tzinfo=tz, microsecond=0) if moment.microsecond else moment.replace(tzinfo=tz)
    else:
        moment = moment.astimezone(tz)
        if moment.microsecond:
            moment = moment.replace(microsecond=0)
    return EventTime(moment, False, zone_name)


def check_time_range(start: EventTime, end: EventTime) -> None:
    if start.all_day != end.all_day:
        raise invalid("Start and end times must either both be date or both be dateTime.", "end")
    empty = end.value <= start.value if start.all_day else end.value < start.value
    if empty:
        # https://developers.google.com/calendar/api/guides/errors#400_bad_request (timeRangeEmpty)
        raise invalid("The specified time range is empty.", "end", reason="timeRangeEmpty")


def normalize_reminders(raw: Any) -> dict:
    """reminders: useDefault, or at most 5 overrides of email|popup, 0..40320 minutes."""
    if raw is None:
        return {"useDefault": True}
    if not isinstance(raw, dict):
        raise invalid("Invalid value for: reminders", "reminders")
    overrides = raw.get("overrides") or []
    use_default = bool(raw.get("useDefault", False))
    if use_default and overrides:
        raise invalid(
            "Cannot specify both default reminders and overrides at the same time.",
            "reminders",
            reason="cannotUseDefaultRemindersAndSpecifyOverride",
        )
    if len(overrides) > MAX_REMINDER_OVERRIDES:
        raise invalid(
            "The maximum number of override reminders is 5.", "reminders.overrides",
            reason="eventRemindersCountExceedsLimit",
        )
    cleaned = []
    for index, item in enumerate(overrides):
        if not isinstance(item, dict) or item.get("method") not in REMINDER_METHODS:
            where = f"reminders.overrides[{index}].method"
            raise invalid(f"Invalid value for: {where}", where)
        minutes = item.get("minutes")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= MAX_REMINDER_MINUTES:
            where = f"reminders.overrides[{index}].minutes"
            raise invalid(f"Invalid value for: {where}", where)
        cleaned.append({"method": item["method"], "minutes": minutes})
    body: dict = {"useDefault": use_default}
    if cleaned:
        body["overrides"] = cleaned
    return body


def normalize_attendees(raw: Any, organizer_email: str, viewer_email: str) -> list[dict]:
    """attendees[]: email required; responseStatus defaults to needsAction; organizer/self are derived."""
    if not isinstance(raw, list):
        raise invalid("Invalid value for: attendees", "attendees")
    cleaned = []
    for index, item in enumerate(raw):
        email = item.get("email") if isinstance(item, dict) else None
        if not email or not isinstance(email, str):
            raise invalid("Missing attendee email.", f"attendees[{index}].email", reason="required")
        status = item.get("responseStatus", "needsAction")
        if status not in RESPONSE_STATUSES:
            raise invalid(f"Invalid value for: attendees[{index}].responseStatus", f"attendees[{index}].responseStatus")
        attendee = {k: v for k, v in item.items() if k not in ("organizer", "self", "id")}
        attendee["responseStatus"] = status
        lowered = email.lower()
        if lowered == organizer_email.lower():
            attendee["organizer"] = True
        if lowered == viewer_email.lower():
            attendee["self"] = True
        cleaned.append(attendee)
    return cleaned


def normalize_extended_properties(raw: Any) -> dict:
    """Key/value string maps; over-long keys dropped, over-long values truncated, totals capped."""
    if not isinstance(raw, dict):
        raise invalid("Invalid value for: extendedProperties", "extendedProperties")
    cleaned: dict = {}
    count = size = 0
    for scope in ("private", "shared"):
        values = raw.get(scope)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise invalid(f"Invalid value for: extendedProperties.{scope}", f"extendedProperties.{scope}")
        kept = {}
        for key, value in values.items():
            if len(key) > MAX_PROPERTY_KEY or value is None:
                continue
            value = str(value)[:MAX_PROPERTY_VALUE]
            kept[key] = value
            count += 1
            size += len(key) + len(value)
        cleaned[scope] = kept
    if count > MAX_PROPERTIES or size > MAX_PROPERTIES_BYTES:
        raise invalid("The extended properties of the event exceed the allowed size.", "extendedProperties")
    return cleaned


def merge_patch(target: dict, patch: dict) -> dict:
    """Patch semantics: given fields replace, arrays replace whole, objects merge, null clears
    (https://developers.google.com/calendar/api/v3/reference/events/patch)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(slots=True)
class CleanEvent:
    """The writable part of an event after validation, with its parsed start and end."""

    fields: dict
    start: EventTime
    end: EventTime


def clean_event(body: Any, calendar_zone: str, organizer_email: str, viewer_email: str) -> CleanEvent:
    """Validate a whole event body (insert, update, or the result of a patch) and keep its writable fields."""
    if not isinstance(body, dict):
        raise invalid("Invalid event body.")
    fields = {k: v for k, v in body.items() if k in WRITABLE_FIELDS and v is not None}
    recurring = bool(fields.get("recurrence"))
    start = parse_event_time(fields.get("start"), "start", calendar_zone, recurring)
    end = parse_event_time(fields.get("end"), "end", calendar_zone, recurring)
    check_time_range(start, end)
    fields["start"], fields["end"] = start.to_json(), end.to_json()
    status = fields.get("status", "confirmed")
    if status not in EVENT_STATUSES:
        raise invalid("Invalid value for: status", "status")
    fields["status"] = status
    fields["reminders"] = normalize_reminders(fields.get("reminders"))
    if "attendees" in fields:
        fields["attendees"] = normalize_attendees(fields["attendees"], organizer_email, viewer_email)
    if "extendedProperties" in fields:
        fields["extendedProperties"] = normalize_extended_properties(fields["extendedProperties"])
    if "recurrence" in fields and not isinstance(fields["recurrence"], list):
        raise invalid("Invalid value for: recurrence", "recurrence")
    return CleanEvent(fields, start, end)
