"""RFC 5545 RRULEs <-> Graph `patternedRecurrence`, both directions side by side.

Graph holds one pattern (https://learn.microsoft.com/graph/api/resources/patternedrecurrence): daily,
weekly (days of the week), absoluteMonthly (a day of the month), relativeMonthly (the first..fourth or
last given weekday), absoluteYearly and relativeYearly (the same within a month), an interval, and a
range that ends on a date, after a number of occurrences, or never. Anything else an RRULE can say
(BYHOUR, BYWEEKNO, several RRULEs, a fifth Monday, the last day of the month...) Graph cannot hold:
`rrule_to_graph` reports it and writes no recurrence. EXDATE/RDATE lines cannot be held either: Graph
keeps exceptions as occurrences of their own, edited or deleted one by one.

RRULEs written from Graph spell every part out (BYDAY for weekly rules, BYMONTHDAY for monthly ones),
and a range's end date becomes an UNTIL at the end of that day in the event's zone, in UTC as RFC 5545
asks for timed events (a date for all-day ones).
"""
from __future__ import annotations

import datetime as dt

from services.calendar_sync.model import EventTime, known_zone, rrule_line, rrule_parts

_DAYS = {"MO": "monday", "TU": "tuesday", "WE": "wednesday", "TH": "thursday", "FR": "friday",
         "SA": "saturday", "SU": "sunday"}
_DAY_CODES = {name: code for code, name in _DAYS.items()}
_INDEXES = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
_INDEX_NUMBERS = {name: number for number, name in _INDEXES.items()}
_FREQS = {"daily": "DAILY", "weekly": "WEEKLY", "absoluteMonthly": "MONTHLY", "relativeMonthly": "MONTHLY",
          "absoluteYearly": "YEARLY", "relativeYearly": "YEARLY"}
_PARTS_GRAPH_HOLDS = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "COUNT", "UNTIL", "WKST"}


class NotHeld(ValueError):
    """A recurrence Graph has no pattern for; the message says why."""


# --- RRULE -> Graph -----------------------------------------------------------------------------


def rrule_to_graph(lines: tuple[str, ...], start: EventTime, zone_name: str) -> tuple[dict | None, list[str]]:
    """The patternedRecurrence for the lines (None when there is none Graph can hold), and what is not held.

    `zone_name` is the Graph name of the zone the series repeats in.
    """
    rules = [line for line in lines if line.startswith("RRULE")]
    unmapped = [f"recurrence: {line}: Graph keeps exceptions as separate occurrences" for line in lines
                if not line.startswith("RRULE")]
    if not rules:
        return None, unmapped
    if len(rules) > 1:
        return None, unmapped + [f"recurrence: {len(rules)} RRULEs: Graph holds one pattern"]
    try:
        parts = rrule_parts(rules[0])
        if set(parts) - _PARTS_GRAPH_HOLDS:
            raise NotHeld(f"Graph has no pattern for {', '.join(sorted(set(parts) - _PARTS_GRAPH_HOLDS))}")
        first_day = start.date or start.instant().date()
        pattern = _pattern(parts, first_day)
        span = _range(parts, first_day, start)
    except (NotHeld, ValueError) as reason:
        return None, unmapped + [f"recurrence: {rules[0]}: {reason}"]
    span["recurrenceTimeZone"] = zone_name
    return {"pattern": pattern, "range": span}, unmapped


def _single_number(parts: dict[str, str], name: str, low: int, high: int, default: int) -> int:
    if name not in parts:
        return default
    values = parts[name].split(",")
    if len(values) != 1 or not low <= int(values[0]) <= high:
        raise NotHeld(f"Graph holds one {name} of {low}..{high}")
    return int(values[0])


def _pattern(parts: dict[str, str], first_day: dt.date) -> dict:
    freq = parts.get("FREQ")
    interval = int(parts.get("INTERVAL", "1"))
    if interval < 1:
        raise NotHeld("INTERVAL must be 1 or more")
    days = [d for d in parts.get("BYDAY", "").split(",") if d]
    weekday = list(_DAYS)[first_day.weekday()]
    if freq == "DAILY":
        if days or {"BYMONTHDAY", "BYMONTH", "BYSETPOS"} & set(parts):
            raise NotHeld("Graph's daily pattern takes no BYDAY, BYMONTHDAY, BYMONTH or BYSETPOS")
        return {"type": "daily", "interval": interval}
    if freq == "WEEKLY":
        if {"BYMONTHDAY", "BYMONTH", "BYSETPOS"} & set(parts) or any(d not in _DAYS for d in days):
            raise NotHeld("Graph's weekly pattern takes plain weekdays only")
        return {"type": "weekly", "interval": interval, "daysOfWeek": [_DAYS[d] for d in days or [weekday]],
                "firstDayOfWeek": _DAYS.get(parts.get("WKST", "MO"), "monday")}
    if freq not in ("MONTHLY", "YEARLY"):
        raise NotHeld(f"Graph has no {freq or 'missing'} frequency")
    pattern: dict = {"interval": interval}
    kind = "Monthly" if freq == "MONTHLY" else "Yearly"
    if freq == "YEARLY":
        pattern["month"] = _single_number(parts, "BYMONTH", 1, 12, first_day.month)
    elif "BYMONTH" in parts:
        raise NotHeld("Graph's monthly pattern takes no BYMONTH")
    if days:
        if "BYMONTHDAY" in parts:
            raise NotHeld("Graph holds BYDAY or BYMONTHDAY, not both")
        pattern["daysOfWeek"], pattern["index"] = _relative_days(days, parts.get("BYSETPOS"))
        return {"type": f"relative{kind}", **pattern}
    pattern["dayOfMonth"] = _single_number(parts, "BYMONTHDAY", 1, 31, first_day.day)
    return {"type": f"absolute{kind}", **pattern}


def _relative_days(days: list[str], setpos: str | None) -> tuple[list[str], str]:
    """BYDAY=2TU, or BYDAY=MO,TU;BYSETPOS=-1: the weekdays and Graph's index (first..fourth, last)."""
    if setpos is not None:
        if any(d not in _DAYS for d in days) or "," in setpos or int(setpos) not in _INDEXES:
            raise NotHeld("Graph holds one BYSETPOS of 1..4 or -1 over plain weekdays")
        return [_DAYS[d] for d in days], _INDEXES[int(setpos)]
    ordinals = {d[:-2] for d in days}
    if len(ordinals) != 1 or not ordinals.pop().lstrip("+-").isdigit() or any(d[-2:] not in _DAYS for d in days):
        raise NotHeld("Graph needs the same ordinal on every weekday (2TU, -1FR)")
    number = int(days[0][:-2])
    if number not in _INDEXES:
        raise NotHeld("Graph's index is first..fourth or last")
    return [_DAYS[d[-2:]] for d in days], _INDEXES[number]


def _range(parts: dict[str, str], first_day: dt.date, start: EventTime) -> dict:
    if "COUNT" in parts and "UNTIL" in parts:
        raise NotHeld("COUNT and UNTIL together")
    if "COUNT" in parts:
        return {"type": "numbered", "startDate": first_day.isoformat(), "numberOfOccurrences": int(parts["COUNT"])}
    if "UNTIL" in parts:
        return {"type": "endDate", "startDate": first_day.isoformat(),
                "endDate": _until_date(parts["UNTIL"], start).isoformat()}
    return {"type": "noEnd", "startDate": first_day.isoformat()}


def _until_date(until: str, start: EventTime) -> dt.date:
    """The last day of the series in the event's own zone."""
    if "T" not in until:
        return dt.datetime.strptime(until[:8], "%Y%m%d").date()
    moment = dt.datetime.strptime(until.rstrip("Z")[:15], "%Y%m%dT%H%M%S")
    zone = known_zone(start.time_zone) or dt.UTC
    if until.endswith("Z"):
        return moment.replace(tzinfo=dt.UTC).astimezone(zone).date()
    return moment.date()


# --- Graph -> RRULE -----------------------------------------------------------------------------


def graph_to_rrule(recurrence: dict, start: EventTime) -> str:
    """The RRULE line for a Graph patternedRecurrence; NotHeld when Graph sent a pattern we do not know."""
    pattern, span = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = pattern.get("type")
    if kind not in _FREQS:
        raise NotHeld(f"unknown pattern type {kind!r}")
    parts = {"FREQ": _FREQS[kind], "INTERVAL": str(int(pattern.get("interval") or 1))}
    days = [_DAY_CODES[str(d).lower()] for d in pattern.get("daysOfWeek") or () if str(d).lower() in _DAY_CODES]
    if kind == "weekly":
        parts["BYDAY"] = ",".join(days)
        first_day_of_week = _DAY_CODES.get(str(pattern.get("firstDayOfWeek") or "monday").lower(), "MO")
        if first_day_of_week != "MO":
            parts["WKST"] = first_day_of_week
    if kind.endswith("Yearly"):
        parts["BYMONTH"] = str(int(pattern["month"]))
    if kind.startswith("absolute"):
        parts["BYMONTHDAY"] = str(int(pattern["dayOfMonth"]))
    if kind.startswith("relative"):
        index = _INDEX_NUMBERS.get(str(pattern.get("index") or "first"), 1)
        if len(days) == 1:
            parts["BYDAY"] = f"{index}{days[0]}"
        else:
            parts["BYDAY"], parts["BYSETPOS"] = ",".join(days), str(index)
    end_kind = span.get("type")
    if end_kind == "numbered":
        parts["COUNT"] = str(int(span["numberOfOccurrences"]))
    elif end_kind == "endDate":
        parts["UNTIL"] = _until(dt.date.fromisoformat(str(span["endDate"])), start)
    return rrule_line(parts)


def _until(last_day: dt.date, start: EventTime) -> str:
    """UNTIL for a series ending on `last_day`: the date for all-day events, else the end of that day in
    the event's zone, in UTC."""
    if start.all_day:
        return last_day.strftime("%Y%m%d")
    zone = known_zone(start.time_zone) or dt.UTC
    end_of_day = dt.datetime.combine(last_day, dt.time(23, 59, 59), zone)
    return end_of_day.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
