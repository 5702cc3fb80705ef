"""Recurring events: the `recurrence[]` lines of a series, expanded into the instances Google derives.

A series keeps RRULE/EXRULE/RDATE/EXDATE lines and no DTSTART/DTEND: the series' own start is the
DTSTART, in its `start.timeZone`, so instances keep their wall-clock time across DST changes
(https://developers.google.com/calendar/api/concepts/events-calendars#recurring_events).
Instance ids are `{seriesId}_{YYYYMMDDTHHMMSSZ}` (original start in UTC) for timed series and
`{seriesId}_{YYYYMMDD}` for all-day ones, the form the API hands out and accepts
(https://developers.google.com/calendar/api/guides/recurringevents).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from dateutil.rrule import rruleset, rrulestr

from sandbox.google.calendar_events import EventTime, invalid, zone

# A series with no end is expanded this far past today (or past its start when that is later). Google does
# not document its own horizon; a sync engine only needs one large enough to see every near instance.
EXPANSION_HORIZON = timedelta(days=730)
MAX_EXPANDED_INSTANCES = 5000

_STAMP = re.compile(r"(\d{8})(T\d{6}Z)?")
_UNTIL = re.compile(r"UNTIL=(\d{8})(T\d{6})?(Z)?", re.IGNORECASE)


def _bad_rule():
    return invalid("Invalid recurrence rule.", "recurrence")


class Recurrence:
    """The occurrence dates of one series: aware datetimes for timed series, naive midnights for all-day."""

    def __init__(self, lines: list, start: EventTime):
        self.all_day = start.all_day
        self.tz = None if start.all_day else start.value.tzinfo  # type: ignore[union-attr]
        self.dtstart = _as_naive_midnight(start.value) if start.all_day else start.value
        self.rules = rruleset()
        for line in lines:
            if not isinstance(line, str) or ":" not in line:
                raise _bad_rule()
            self._add_line(line.strip())

    def _add_line(self, line: str) -> None:
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        try:
            if name in ("RRULE", "EXRULE"):
                rule = rrulestr(self._until_fixed(line), dtstart=self.dtstart, ignoretz=False)
                (self.rules.rrule if name == "RRULE" else self.rules.exrule)(rule)
            elif name in ("RDATE", "EXDATE"):
                for moment in self._dates(line):
                    (self.rules.rdate if name == "RDATE" else self.rules.exdate)(moment)
            else:
                raise _bad_rule()
        except (ValueError, TypeError, KeyError):
            raise _bad_rule() from None

    def _until_fixed(self, line: str) -> str:
        """UNTIL in the form dateutil needs next to this DTSTART: UTC for timed series, floating for
        all-day ones. Google accepts a bare date for either (the series then ends with that day)."""

        def fix(match: re.Match) -> str:
            day, clock, utc = match.group(1), match.group(2), match.group(3)
            if self.all_day:
                return f"UNTIL={day}"
            if utc and clock:
                return match.group(0)
            local = datetime.strptime(day + (clock or "T235959"), "%Y%m%dT%H%M%S").replace(tzinfo=self.tz)
            return f"UNTIL={local.astimezone(UTC):%Y%m%dT%H%M%S}Z"

        return _UNTIL.sub(fix, line)

    def _dates(self, line: str) -> Iterator[datetime]:
        params, values = line.split(":", 1)
        tz = self.tz
        for param in params.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.upper() == "TZID":
                tz = zone(value)
                if tz is None:
                    raise ValueError(value)
        for value in values.split(","):
            value = value.strip()
            if len(value) == 8:
                parsed = datetime.strptime(value, "%Y%m%d")
                if not self.all_day:
                    parsed = datetime.combine(parsed.date(), self.dtstart.timetz())  # type: ignore[union-attr]
            elif value.endswith("Z"):
                parsed = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            else:
                parsed = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=tz)
            if self.all_day:
                yield _as_naive_midnight(parsed)
            else:
                yield parsed.astimezone(self.tz) if parsed.tzinfo else parsed.replace(tzinfo=self.tz)

    # --- expansion ------------------------------------------------------------------------------------
    def _comparable(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC).replace(tzinfo=None) if self.all_day else moment

    def starts_between(self, after: datetime | None, before: datetime | None, now: datetime) -> list[datetime]:
        """Original starts s with after < s < before; an open end stops at the expansion horizon."""
        series_start = self.dtstart.replace(tzinfo=UTC) if self.all_day else self.dtstart
        horizon = max(now, series_start) + EXPANSION_HORIZON
        upper = self._comparable(min(before, horizon) if before else horizon)
        lower = self._comparable(after) if after else None
        found = []
        for moment in self.rules:
            if moment >= upper or len(found) >= MAX_EXPANDED_INSTANCES:
                break
            if lower is None or moment > lower:
                found.append(moment)
        return found

    def includes(self, original: datetime) -> bool:
        return original in self.rules

    def event_time(self, original: datetime, zone_name: str | None) -> EventTime:
        if self.all_day:
            return EventTime(original.date(), True, zone_name)
        return EventTime(original, False, zone_name)


def _as_naive_midnight(value: date | datetime) -> datetime:
    day = value.date() if isinstance(value, datetime) else value
    return datetime.combine(day, time())


def instance_stamp(original: datetime, all_day: bool) -> str:
    if all_day:
        return f"{original:%Y%m%d}"
    return f"{original.astimezone(UTC):%Y%m%dT%H%M%S}Z"


def instance_id(series_id: str, original: datetime, all_day: bool) -> str:
    return f"{series_id}_{instance_stamp(original, all_day)}"


def split_instance_id(event_id: str) -> tuple[str, str] | None:
    """(series id, stamp) for an instance id, None for any other id (client ids cannot hold `_`)."""
    series_id, sep, stamp = event_id.rpartition("_")
    if not sep or not _STAMP.fullmatch(stamp):
        return None
    return series_id, stamp


def original_from_stamp(stamp: str, recurrence: Recurrence) -> datetime | None:
    """The original start named by an instance-id stamp, in the series' own terms."""
    try:
        if recurrence.all_day:
            return datetime.strptime(stamp, "%Y%m%d") if len(stamp) == 8 else None
        if len(stamp) == 8:
            return None
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(recurrence.tz)
    except ValueError:
        return None
