"""What every side's mapping shares: the result type, the report, and the rules for times.

The rules for bad input live here once, so every side applies them alike:
- A malformed date, or a local time whose zone is unknown, cannot be mapped: `InvalidEvent` (the
  worker dead-letters the change with the reason).
- An unknown zone name on an instant that carries its offset is reported, and the event is kept in UTC:
  the instant is still right.
- An end before its start is clamped to the start (to one day for all-day events) and reported, so a
  bad end never stops an event from syncing.
- All-day dates are taken as written, never converted through UTC or any other zone: that is how an
  all-day event would land a day early or late.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from services.calendar_sync.model import Attendee, CanonicalEvent, EventTime, known_zone
from services.common.retry import PermanentError


class InvalidEvent(PermanentError):
    """An event that cannot be mapped at all; the message says which field and why."""


@dataclass(frozen=True)
class Mapped:
    """A mapped event, with what the other side cannot hold (`unmapped`) and what was wrong with the
    input but recovered (`problems`). `event` is None for an event the provider reports deleted."""

    event: CanonicalEvent | None
    unmapped: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass
class Report:
    """Collects a mapping's findings while it runs."""

    unmapped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def mapped(self, event: CanonicalEvent | None) -> Mapped:
        """The result, each finding once (a start and an end in one unknown zone are one finding)."""
        return Mapped(event, tuple(dict.fromkeys(self.unmapped)), tuple(dict.fromkeys(self.problems)))


def parse_date_time(text: object, where: str) -> dt.datetime:
    """An RFC 3339 / ISO 8601 date-time; naive when it has no offset. InvalidEvent when malformed."""
    if not isinstance(text, str) or "T" not in text.upper() and " " not in text.strip():
        raise InvalidEvent(f"{where} {text!r} is not an RFC 3339 date-time")
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidEvent(f"{where} {text!r} is not an RFC 3339 date-time") from None


def parse_date(text: object, where: str) -> dt.date:
    """The date part (YYYY-MM-DD) of a date or date-time, as written: never moved to another zone.
    InvalidEvent when malformed."""
    written = str(text).strip()
    try:
        day = dt.date.fromisoformat(written[:10])
    except ValueError:
        raise InvalidEvent(f"{where} {text!r} is not a date (YYYY-MM-DD)") from None
    if len(written) > 10:
        parse_date_time(written, where)  # the rest must be a time
    return day


def event_time(moment: dt.datetime, zone_name: str | None, where: str, report: Report) -> EventTime:
    """An instant kept in its zone. A naive time is read in that zone; an unknown zone is reported and
    replaced by UTC when the instant carries its offset, and makes the event invalid when it does not."""
    zone = known_zone(zone_name)
    if zone_name and zone is None:
        if moment.tzinfo is None:
            raise InvalidEvent(f"{where}: unknown time zone {zone_name!r} and no UTC offset to fall back on")
        report.problems.append(f"{where}: unknown time zone {zone_name!r}, kept in UTC")
        zone_name = "UTC"
    if moment.tzinfo is None:
        if zone is None:
            raise InvalidEvent(f"{where} {moment.isoformat()} has no UTC offset and no time zone")
        moment = moment.replace(tzinfo=zone)
    return EventTime.at(moment, zone_name or None)


def timed_range(start: EventTime, end: EventTime, report: Report) -> tuple[EventTime, EventTime]:
    """start and end; an end before the start is clamped to the start and reported."""
    if end.instant() < start.instant():
        report.problems.append(f"end {end.instant().isoformat()} before start: clamped to start")
        return start, EventTime.at(start.instant(), start.time_zone)
    return start, end


def all_day_range(first: dt.date, end_exclusive: dt.date, report: Report) -> tuple[EventTime, EventTime]:
    """An all-day range; an end on or before the first day is clamped to one day and reported."""
    if end_exclusive <= first:
        report.problems.append(f"all-day end {end_exclusive} not after start {first}: clamped to one day")
        end_exclusive = first + dt.timedelta(days=1)
    return EventTime.on(first), EventTime.on(end_exclusive)


def listed_dicts(items: object, label: str, report: Report) -> Iterator[tuple[str, dict]]:
    """(where, item) for each entry of a list that is an object; other entries are reported and skipped."""
    for index, item in enumerate(items if isinstance(items, list | tuple) else ()):
        where = f"{label}[{index}]"
        if isinstance(item, dict):
            yield where, item
        else:
            report.problems.append(f"{where}: {str(item)[:80]!r} is not an object: skipped")


def popup_reminders(items: object, label: str, report: Report) -> tuple[int, ...]:
    """The minutes of the popup reminders in [{"method", "minutes"}, ...]; other methods are unmapped."""
    kept = []
    for where, item in listed_dicts(items, label, report):
        method = item.get("method", "popup")
        if method != "popup":
            report.unmapped.append(f"{where}: {method} reminder: only popup reminders are synced")
        elif (minutes := popup_minutes(item.get("minutes"), where, report)) is not None:
            kept.append(minutes)
    return tuple(kept)


def popup_minutes(minutes: object, where: str, report: Report) -> int | None:
    """A reminder's minutes before the start, or None (reported) when it is not a whole number >= 0."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        report.problems.append(f"{where}: reminder minutes {minutes!r} is not a whole number >= 0: skipped")
        return None
    return minutes


def attendee_or_none(email: object, where: str, report: Report, **values) -> Attendee | None:
    """An attendee, or None (reported as unmapped) when there is no usable address."""
    if not isinstance(email, str) or "@" not in email:
        report.unmapped.append(f"{where}: no email address ({values.get('name') or repr(email)}): not synced")
        return None
    return Attendee(email=email, **values)


# --- what a provider can hold -------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderLimits:
    """How much of an event a provider holds. Figures that providers change or do not document are
    settings: the engine may pass its own. None means no limit."""

    provider: str
    description_max_chars: int | None = None
    attendees_max: int | None = None
    popup_reminders_max: int | None = None
    reminder_minutes_max: int | None = None


def fit(event: CanonicalEvent, limits: ProviderLimits) -> Mapped:
    """The event as a provider with these limits holds it, with each cut in `unmapped`: what fit_google
    is, and where fit_graph starts before its own cuts (a recurrence Graph has no pattern for)."""
    report = Report()
    return report.mapped(fit_to_limits(event, limits, report))


def fit_to_limits(event: CanonicalEvent, limits: ProviderLimits, report: Report) -> CanonicalEvent:
    """The event as the provider can hold it, each cut reported as unmapped.

    Attendees beyond the cap: required ones are kept before optional ones, then by address. Reminders
    beyond the cap: the ones closest to the start are kept.
    """
    changes: dict[str, object] = {}
    cap = limits.description_max_chars
    if cap is not None and len(event.description) > cap:
        report.unmapped.append(
            f"description: {len(event.description)} characters, {limits.provider} holds {cap}: truncated"
        )
        changes["description"] = event.description[:cap]
    reminders = event.reminders_minutes
    if limits.reminder_minutes_max is not None:
        too_early = [m for m in reminders if m > limits.reminder_minutes_max]
        if too_early:
            report.unmapped.append(f"reminders {too_early} minutes: {limits.provider} holds at most "
                                   f"{limits.reminder_minutes_max} minutes before the start")
            reminders = tuple(m for m in reminders if m <= limits.reminder_minutes_max)
    if limits.popup_reminders_max is not None and len(reminders) > limits.popup_reminders_max:
        report.unmapped.append(f"reminders {list(reminders[limits.popup_reminders_max:])} minutes: "
                               f"{limits.provider} holds {limits.popup_reminders_max} popup reminder(s)")
        reminders = reminders[: limits.popup_reminders_max]
    if reminders != event.reminders_minutes:
        changes["reminders_minutes"] = reminders
    cap = limits.attendees_max
    if cap is not None and len(event.attendees) > cap:
        kept = sorted(event.attendees, key=lambda a: (a.optional, a.email))[:cap]
        report.unmapped.append(
            f"attendees: {len(event.attendees)}, {limits.provider} holds {cap}: "
            f"{len(event.attendees) - cap} not written (optional ones first, then by address)"
        )
        changes["attendees"] = tuple(sorted(kept, key=lambda a: a.email))
    return event.model_copy(update=changes) if changes else event

