"""The canonical calendar event: what a CRM event and a provider event are compared and merged as.

Each side maps to and from this shape (mapping.py), so the engine, echo detection and the three-way
merge work on one model whatever the provider. Fields a side cannot hold are reported by the mapping
as `unmapped`, not silently dropped.

The model keeps itself in one canonical form, whoever builds it, because equality and the fingerprint
are how echoes and changes are recognised: two events that mean the same must compare equal.
- Titles and locations are stripped; an untitled event has the title "" (the CRM shows it as UNTITLED).
- A timed start or end is an instant in a named IANA zone (UTC when none is named), whole seconds.
- An all-day start or end is a date and nothing else; the end date is exclusive, as in Google, Graph
  and iCalendar (an event on 1 May ends on 2 May).
- Reminders are popup minutes, sorted, each once.
- Attendees are lower-cased, each address once, sorted by address; names are stripped.
- Recurrence lines are RFC 5545 RRULE/EXRULE/RDATE/EXDATE lines, rules first, with the RRULE parts in
  one order (see `rrule_line`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

UNTITLED = "Not specified"  # what an untitled provider event is called in the CRM

Response = Literal["needs_action", "accepted", "declined", "tentative"]


def known_zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone of that name, or None when zoneinfo does not know it (or it is no name at all)."""
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class Attendee(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str  # lower-cased: attendees are matched by address, case-insensitive
    name: str = ""
    optional: bool = False
    response: Response = "needs_action"

    @field_validator("email")
    @classmethod
    def _lower(cls, email: str) -> str:
        return email.strip().lower()

    @field_validator("name")
    @classmethod
    def _strip(cls, name: str) -> str:
        return name.strip()


class EventTime(BaseModel):
    """Either a date (all-day) or an instant with the time zone it was set in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date: dt.date | None = None
    date_time: AwareDatetime | None = None
    time_zone: str | None = Field(None, description="IANA name, e.g. Europe/Berlin; None for all-day")

    @model_validator(mode="before")
    @classmethod
    def _canonical_form(cls, data: Any) -> Any:
        """All-day: no zone. Timed: the instant expressed in its zone (UTC if unnamed), whole seconds."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("date") is not None:
            data["time_zone"] = None
            return data
        moment = data.get("date_time")
        if isinstance(moment, str):
            try:
                moment = dt.datetime.fromisoformat(moment)
            except ValueError:
                return data  # pydantic reports it
        if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
            name = data.get("time_zone") or "UTC"
            zone = known_zone(name)
            if zone is None:
                raise ValueError(f"time_zone {name!r} is not an IANA time zone")
            data["time_zone"] = name
            data["date_time"] = moment.astimezone(zone).replace(microsecond=0)
        return data

    @model_validator(mode="after")
    def _date_or_instant(self) -> EventTime:
        if (self.date is None) == (self.date_time is None):
            raise ValueError("an event time is either a date (all-day) or a date_time, not both or neither")
        return self

    @classmethod
    def on(cls, day: dt.date) -> EventTime:
        return cls(date=day)

    @classmethod
    def at(cls, moment: dt.datetime, time_zone: str | None = None) -> EventTime:
        return cls(date_time=moment, time_zone=time_zone)

    @property
    def all_day(self) -> bool:
        return self.date is not None

    def rfc3339(self) -> str:
        """The date ("2026-05-01"), or the instant with its offset in its zone ("2026-05-01T10:00:00+02:00")."""
        if self.date is not None:
            return self.date.isoformat()
        assert self.date_time is not None
        return self.date_time.isoformat(timespec="seconds")

    def instant(self, all_day_zone: dt.tzinfo = dt.UTC) -> dt.datetime:
        """A point in time to order events by; an all-day date counts from midnight in `all_day_zone`."""
        if self.date is not None:
            return dt.datetime.combine(self.date, dt.time(), all_day_zone)
        assert self.date_time is not None
        return self.date_time


RULE_KINDS = ("RRULE", "EXRULE", "RDATE", "EXDATE")
_RRULE_PART_ORDER = (
    "FREQ", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO",
    "BYMONTH", "BYSETPOS", "COUNT", "UNTIL", "WKST",
)
_WEEKDAY_ORDER = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def rrule_parts(line: str) -> dict[str, str]:
    """The NAME=VALUE parts of an RRULE/EXRULE line, names and values upper-cased."""
    _, _, body = line.partition(":")
    parts: dict[str, str] = {}
    for item in body.split(";"):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            parts[name.strip().upper()] = value.strip().upper()
    return parts


def _byday_key(item: str) -> tuple[int, int]:
    day = item[-2:]
    return (_WEEKDAY_ORDER.index(day) if day in _WEEKDAY_ORDER else 7, 0 if len(item) == 2 else int(item[:-2] or 0))


def rrule_line(parts: dict[str, str], kind: str = "RRULE") -> str:
    """An RRULE line in the canonical form: parts in RFC 5545 order, INTERVAL=1 left out, days in week order."""
    parts = {name: value for name, value in parts.items() if not (name == "INTERVAL" and value == "1")}
    if "BYDAY" in parts:
        parts["BYDAY"] = ",".join(sorted(parts["BYDAY"].split(","), key=_byday_key))
    known = [name for name in _RRULE_PART_ORDER if name in parts]
    other = sorted(name for name in parts if name not in _RRULE_PART_ORDER)
    return f"{kind}:" + ";".join(f"{name}={parts[name]}" for name in known + other)


def recurrence_line(line: str) -> str:
    """One recurrence line in canonical form: rule parts in one order; date lines as written, the name upper-cased."""
    line = line.strip()
    name = line.split(":", 1)[0].split(";", 1)[0].upper()
    if name in ("RRULE", "EXRULE"):
        return rrule_line(rrule_parts(line), name)
    head, sep, value = line.partition(":")
    kind, params_sep, params = head.partition(";")
    return kind.upper() + params_sep + params + sep + value.strip()


def _recurrence_order(line: str) -> tuple[int, str]:
    name = line.split(":", 1)[0].split(";", 1)[0]
    return (RULE_KINDS.index(name) if name in RULE_KINDS else len(RULE_KINDS), line)


class CanonicalEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = ""
    description: str = ""
    location: str = ""
    start: EventTime
    end: EventTime
    reminders_minutes: tuple[int, ...] = ()  # popup reminders, sorted
    attendees: tuple[Attendee, ...] = ()  # sorted by email
    recurrence: tuple[str, ...] = ()  # RFC 5545 RRULE/EXDATE/RDATE lines
    ical_uid: str | None = None
    cancelled: bool = False

    @field_validator("title", "location")
    @classmethod
    def _strip(cls, text: str) -> str:
        return text.strip()

    @field_validator("reminders_minutes")
    @classmethod
    def _reminders(cls, minutes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(minutes)))

    @field_validator("attendees")
    @classmethod
    def _attendees(cls, attendees: tuple[Attendee, ...]) -> tuple[Attendee, ...]:
        return unique_attendees(attendees)

    @field_validator("recurrence")
    @classmethod
    def _recurrence(cls, lines: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(dict.fromkeys(recurrence_line(line) for line in lines if line.strip()),
                            key=_recurrence_order))

    def fingerprint(self) -> str:
        """Equal for events equal in every synced field: what we compare to recognise our own echo."""
        canonical = self.model_dump(mode="json", exclude={"ical_uid"})
        return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def field_values(self) -> dict[str, object]:
        """Field name -> comparable value, the unit of the three-way merge."""
        return {name: getattr(self, name) for name in MERGED_FIELDS}


def unique_attendees(attendees) -> tuple[Attendee, ...]:
    """Each address once, sorted. Where an address repeats, the entries are combined: the first name
    given, required if any entry requires it, and the first answer other than needs_action."""
    by_email: dict[str, Attendee] = {}
    for attendee in attendees:
        seen = by_email.get(attendee.email)
        if seen is None:
            by_email[attendee.email] = attendee
            continue
        by_email[attendee.email] = seen.model_copy(update={
            "name": seen.name or attendee.name,
            "optional": seen.optional and attendee.optional,
            "response": seen.response if seen.response != "needs_action" else attendee.response,
        })
    return tuple(by_email[email] for email in sorted(by_email))


def with_exception_date(event: CanonicalEvent, original_start: EventTime) -> CanonicalEvent:
    """The series without the occurrence that started at `original_start` (an EXDATE line, RFC 5545:
    a date for all-day series, else the instant in UTC), as a cancelled occurrence is held canonically."""
    if original_start.date is not None:
        line = f"EXDATE;VALUE=DATE:{original_start.date.strftime('%Y%m%d')}"
    else:
        line = f"EXDATE:{original_start.instant().astimezone(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
    return CanonicalEvent.model_validate(event.model_dump() | {"recurrence": (*event.recurrence, line)})


def exception_dates(lines: tuple[str, ...]) -> list[EventTime]:
    """The starts the EXDATE lines remove from a series: dates (VALUE=DATE), instants in UTC ("...Z"), or
    local times in the line's TZID; several per line, comma-separated. A value that reads as none of
    these is left out: it removes nothing a provider could be told about."""
    found: list[EventTime] = []
    for line in lines:
        head, _, values = line.partition(":")
        name, *params = head.split(";")
        if name.upper() != "EXDATE":
            continue
        options = dict(p.split("=", 1) for p in params if "=" in p)
        zone = known_zone(options.get("TZID"))
        for value in filter(None, (v.strip() for v in values.split(","))):
            try:
                if len(value) == 8:
                    found.append(EventTime.on(dt.datetime.strptime(value, "%Y%m%d").date()))
                elif value.endswith("Z"):
                    found.append(EventTime.at(dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)))
                elif zone is not None:
                    local = dt.datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
                    found.append(EventTime.at(local, options["TZID"]))
            except ValueError:
                continue
    return found


MERGED_FIELDS: tuple[str, ...] = (
    "title", "description", "location", "start", "end", "reminders_minutes", "attendees", "recurrence",
)
