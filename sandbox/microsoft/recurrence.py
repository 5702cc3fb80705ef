"""Graph's `patternedRecurrence`: checked on write, expanded into occurrences for calendar views.

Shape (https://learn.microsoft.com/graph/api/resources/patternedrecurrence): `pattern` {type: daily |
weekly | absoluteMonthly | relativeMonthly | absoluteYearly | relativeYearly, interval, daysOfWeek,
dayOfMonth, month, index, firstDayOfWeek} and `range` {type: endDate | noEnd | numbered, startDate,
endDate, numberOfOccurrences, recurrenceTimeZone}. The series keeps the wall-clock time of the event's
start in its own time zone, across daylight-saving changes, as Outlook does.
"""
from __future__ import annotations

import datetime as dt

from dateutil import rrule

from sandbox.errors import graph_error

_WEEKDAYS = {
    "monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE, "thursday": rrule.TH,
    "friday": rrule.FR, "saturday": rrule.SA, "sunday": rrule.SU,
}
_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_FREQ = {
    "daily": rrule.DAILY, "weekly": rrule.WEEKLY, "absoluteMonthly": rrule.MONTHLY,
    "relativeMonthly": rrule.MONTHLY, "absoluteYearly": rrule.YEARLY, "relativeYearly": rrule.YEARLY,
}
_NEEDS_DAYS = {"weekly", "relativeMonthly", "relativeYearly"}


def _invalid(message: str):
    return graph_error(400, "ErrorInvalidRequest", f"Invalid recurrence: {message}")


def _date(value, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise _invalid(f"{field} must be a date (yyyy-MM-dd), not '{value}'") from None


def validate(recurrence: dict | None) -> dict | None:
    """The recurrence as stored (null clears it); 400 when a pattern or range cannot be expanded."""
    if recurrence is None:
        return None
    pattern, span = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = pattern.get("type")
    if kind not in _FREQ:
        raise _invalid(f"pattern.type '{kind}' is not one of {sorted(_FREQ)}")
    if int(pattern.get("interval") or 0) < 1:
        raise _invalid("pattern.interval must be 1 or more")
    days = pattern.get("daysOfWeek") or []
    if kind in _NEEDS_DAYS and not days:
        raise _invalid(f"pattern.daysOfWeek is required for {kind}")
    if any(str(d).lower() not in _WEEKDAYS for d in days):
        raise _invalid(f"pattern.daysOfWeek has an unknown day: {days}")
    if kind in ("absoluteMonthly", "absoluteYearly") and not 1 <= int(pattern.get("dayOfMonth") or 0) <= 31:
        raise _invalid("pattern.dayOfMonth must be 1..31")
    if kind.endswith("Yearly") and not 1 <= int(pattern.get("month") or 0) <= 12:
        raise _invalid("pattern.month must be 1..12")
    range_type = span.get("type")
    if range_type not in ("endDate", "noEnd", "numbered"):
        raise _invalid(f"range.type '{range_type}' is not one of endDate, noEnd, numbered")
    start = _date(span.get("startDate"), "range.startDate")
    if range_type == "endDate" and _date(span.get("endDate"), "range.endDate") < start:
        raise _invalid("range.endDate is before range.startDate")
    if range_type == "numbered" and int(span.get("numberOfOccurrences") or 0) < 1:
        raise _invalid("range.numberOfOccurrences must be 1 or more")
    return recurrence


def _rule(recurrence: dict, first_start: dt.datetime) -> rrule.rrule:
    pattern, span = recurrence["pattern"], recurrence["range"]
    kind = pattern["type"]
    start_date = dt.date.fromisoformat(span["startDate"])
    dtstart = dt.datetime.combine(start_date, first_start.timetz())
    days = [_WEEKDAYS[str(d).lower()] for d in pattern.get("daysOfWeek") or []]
    options: dict = {"dtstart": dtstart, "interval": int(pattern["interval"])}
    if kind == "weekly":
        options["byweekday"] = days
        options["wkst"] = _WEEKDAYS.get(str(pattern.get("firstDayOfWeek", "sunday")).lower(), rrule.SU)
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        options["bymonthday"] = int(pattern["dayOfMonth"])
    elif kind in ("relativeMonthly", "relativeYearly"):
        options["byweekday"] = days
        options["bysetpos"] = _INDEX.get(str(pattern.get("index", "first")), 1)
    if kind.endswith("Yearly"):
        options["bymonth"] = int(pattern["month"])
    if span["type"] == "endDate":
        end_date = dt.date.fromisoformat(span["endDate"])
        options["until"] = dt.datetime.combine(end_date, dt.time(23, 59, 59), tzinfo=first_start.tzinfo)
    elif span["type"] == "numbered":
        options["count"] = int(span["numberOfOccurrences"])
    return rrule.rrule(_FREQ[kind], **options)


def starts_in_window(
    recurrence: dict | None,
    first_start: dt.datetime,
    duration: dt.timedelta,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> list[dt.datetime]:
    """Start times (aware, in the event's zone) of the instances that overlap [window_start, window_end)."""
    if recurrence is None:
        overlaps = first_start < window_end and first_start + duration > window_start
        return [first_start] if overlaps else []
    rule = _rule(recurrence, first_start)
    return list(rule.between(window_start - duration, window_end, inc=False))


def occurs_at(recurrence: dict, first_start: dt.datetime, moment: dt.datetime) -> bool:
    """Whether the series has an occurrence starting at `moment` (aware, in the event's zone)."""
    second = dt.timedelta(seconds=1)
    return bool(_rule(recurrence, first_start).between(moment - second, moment + second, inc=True))


def neighbours(recurrence: dict, first_start: dt.datetime, moment: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The series' occurrence starts just before and just after `moment` (None at either end of the series)."""
    rule = _rule(recurrence, first_start)
    return rule.before(moment), rule.after(moment)
