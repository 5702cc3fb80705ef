"""The canonical event keeps one form whoever builds it: equal meaning, equal events, equal fingerprints.

The builders at the top are shared by the other calendar tests.
"""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.calendar_sync.model import Attendee, CanonicalEvent, EventTime

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: str | None = None) -> EventTime:
    """A timed start or end from RFC 3339 text, kept in `zone`."""
    return EventTime.at(dt.datetime.fromisoformat(text), zone)


def day(text: str) -> EventTime:
    return EventTime.on(dt.date.fromisoformat(text))


def meeting(**fields) -> CanonicalEvent:
    """A one-hour meeting in Berlin on 24 Nov 2026, changed where a test says so."""
    values = {"title": "Review", "start": at("2026-11-24T10:00:00+01:00", "Europe/Berlin"),
                  "end": at("2026-11-24T11:00:00+01:00", "Europe/Berlin")}
    values.update(fields)
    return CanonicalEvent(**values)


def guest(email: str, **fields) -> Attendee:
    return Attendee(email=email, **fields)


def test_a_timed_start_is_an_instant_kept_in_its_zone_in_whole_seconds():
    utc = EventTime.at(dt.datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=dt.UTC), "Europe/Berlin")
    assert utc.date_time == dt.datetime(2026, 11, 24, 10, 0, tzinfo=BERLIN)
    assert utc.date_time.utcoffset() == dt.timedelta(hours=1)
    assert utc == at("2026-11-24T10:00:00+01:00", "Europe/Berlin")
    assert utc.rfc3339() == "2026-11-24T10:00:00+01:00"


def test_a_timed_start_without_a_zone_is_kept_in_utc():
    moment = at("2026-11-24T10:00:00+01:00")
    assert moment.time_zone == "UTC" and moment.rfc3339() == "2026-11-24T09:00:00+00:00"


def test_an_all_day_date_has_no_zone_and_is_either_a_date_or_an_instant():
    assert EventTime(date=dt.date(2026, 5, 1), time_zone="Europe/Berlin").time_zone is None
    assert day("2026-05-01").rfc3339() == "2026-05-01" and day("2026-05-01").all_day
    with pytest.raises(ValidationError):
        EventTime()
    with pytest.raises(ValidationError):
        EventTime(date=dt.date(2026, 5, 1), date_time=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        EventTime.at(dt.datetime(2026, 5, 1, tzinfo=dt.UTC), "W. Europe Standard Time")


def test_attendees_are_lower_cased_each_address_once_and_sorted():
    event = meeting(attendees=(
        guest("Zed@X.com"), guest("ann@x.com", optional=True), guest(" ANN@x.com ", name="Ann", response="accepted"),
    ))
    assert event.attendees == (
        guest("ann@x.com", name="Ann", optional=False, response="accepted"), guest("zed@x.com"),
    )


def test_reminders_are_sorted_each_once():
    assert meeting(reminders_minutes=(30, 10, 30, 0)).reminders_minutes == (0, 10, 30)


def test_recurrence_lines_take_one_form_rules_first():
    event = meeting(recurrence=("EXDATE;TZID=Europe/Berlin:20261201T100000",
                                "rrule:interval=1;byday=we,mo;freq=weekly", ""))
    assert event.recurrence == ("RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "EXDATE;TZID=Europe/Berlin:20261201T100000")


def test_titles_and_locations_are_stripped_descriptions_are_kept_as_written():
    event = meeting(title="  Review ", location=" Room 1 ", description="  indented\n")
    assert (event.title, event.location, event.description) == ("Review", "Room 1", "  indented\n")


def test_the_fingerprint_is_equal_for_equal_meaning_and_ignores_the_ical_uid():
    same = meeting(start=at("2026-11-24T09:00:00+00:00", "Europe/Berlin"),
                   end=at("2026-11-24T10:00:00Z", "Europe/Berlin"), ical_uid="abc")
    assert same.fingerprint() == meeting().fingerprint()
    assert meeting(title="Other").fingerprint() != meeting().fingerprint()
    assert meeting(start=at("2026-11-24T10:00:00+01:00", "Europe/Paris")).fingerprint() != meeting().fingerprint()


def test_a_cancelled_occurrence_is_an_exception_date_of_its_series():
    from services.calendar_sync.model import with_exception_date

    series = meeting(recurrence=("RRULE:FREQ=WEEKLY;COUNT=5",))
    timed = with_exception_date(series, at("2026-12-01T10:00:00+01:00", "Europe/Berlin"))
    assert timed.recurrence == ("RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE:20261201T090000Z"), "the instant, in UTC"
    assert timed.fingerprint() != series.fingerprint()
    whole_days = meeting(start=day("2026-11-24"), end=day("2026-11-25"), recurrence=("RRULE:FREQ=DAILY",))
    assert with_exception_date(whole_days, day("2026-11-26")).recurrence[-1] == "EXDATE;VALUE=DATE:20261126"
    again = with_exception_date(timed, at("2026-12-01T09:00:00Z"))
    assert again.recurrence == timed.recurrence, "the same occurrence twice: one line"


def test_the_dates_an_exdate_removes_are_read_in_every_form_rfc_5545_writes():
    from services.calendar_sync.model import exception_dates

    lines = ("RRULE:FREQ=DAILY", "EXDATE:20261201T090000Z,20261208T090000Z", "EXDATE;VALUE=DATE:20261203",
             "EXDATE;TZID=Europe/Berlin:20261205T100000", "EXDATE:not-a-date", "EXDATE;TZID=Mars/Base:20261205T100000")
    found = exception_dates(lines)
    assert [t.instant() for t in found] == [
        dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC), dt.datetime(2026, 12, 8, 9, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 3, tzinfo=dt.UTC), dt.datetime(2026, 12, 5, 9, tzinfo=dt.UTC)]
    assert found[2] == day("2026-12-03") and found[3].time_zone == "Europe/Berlin"
    assert exception_dates(("RRULE:FREQ=WEEKLY",)) == []
