"""The canonical calendar event: what a CRM event and a provider event are compared and merged as.

Each side maps to and from this shape (mapping.py), so the engine, echo detection and the three-way
merge work on one model whatever the provider. Fields a side cannot hold are reported by the mapping
as `Unmapped`, not silently dropped.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

UNTITLED = "Not specified"  # what an untitled provider event is called in the CRM


class Attendee(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str  # lower-cased by the mapping: attendees are matched by address, case-insensitive
    name: str = ""
    optional: bool = False
    response: Literal["needs_action", "accepted", "declined", "tentative"] = "needs_action"


class EventTime(BaseModel):
    """Either a date (all-day) or an instant with the time zone it was set in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date: dt.date | None = None
    date_time: AwareDatetime | None = None
    time_zone: str | None = Field(None, description="IANA name, e.g. Europe/Berlin")

    @property
    def all_day(self) -> bool:
        return self.date is not None


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

    def fingerprint(self) -> str:
        """Equal for events equal in every synced field: what we compare to recognise our own echo."""
        canonical = self.model_dump(mode="json", exclude={"ical_uid"})
        return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def field_values(self) -> dict[str, object]:
        """Field name -> comparable value, the unit of the three-way merge."""
        return {name: getattr(self, name) for name in MERGED_FIELDS}


MERGED_FIELDS: tuple[str, ...] = (
    "title", "description", "location", "start", "end", "reminders_minutes", "attendees", "recurrence",
)
