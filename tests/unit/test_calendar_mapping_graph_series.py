"""Occurrences cancelled in an Outlook series, found from its rule and its /instances (Graph v1.0 has no
cancelledOccurrences): what is gone is reported, what moved or cannot be judged is not."""
import datetime as dt

from services.calendar_sync.mapping_graph_series import cancelled_occurrences
from services.calendar_sync.model import EventTime
from tests.unit.test_calendar_mapping_graph import graph_event

UTC = dt.UTC
WINDOW = (dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2027, 2, 1, tzinfo=UTC))
# Tuesdays at 10:00 in Berlin (09:00 UTC), four of them: 24 Nov, 1, 8 and 15 Dec 2026.
MASTER = graph_event(id="m1", type="seriesMaster", recurrence={
    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "sunday"},
    "range": {"type": "numbered", "startDate": "2026-11-24", "numberOfOccurrences": 4,
              "recurrenceTimeZone": "W. Europe Standard Time"}})
DATES = ("2026-11-24", "2026-12-01", "2026-12-08", "2026-12-15")


def occurrence(day: str, **fields) -> dict:
    """An occurrence as /instances lists it (read in UTC), with its originalStart."""
    return {"id": f"m1_{day}", "type": "occurrence", "seriesMasterId": "m1", "originalStart": f"{day}T09:00:00Z",
            "start": {"dateTime": f"{day}T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": f"{day}T10:00:00.0000000", "timeZone": "UTC"}, **fields}


def berlin(day: str) -> EventTime:
    return EventTime.at(dt.datetime.fromisoformat(f"{day}T09:00:00+00:00"), "Europe/Berlin")


def test_a_date_of_the_rule_no_instance_started_at_is_cancelled():
    listed = [occurrence(d) for d in DATES if d != "2026-12-01"]
    assert cancelled_occurrences(MASTER, listed, *WINDOW) == [berlin("2026-12-01")]
    assert cancelled_occurrences(MASTER, listed, *WINDOW)[0].time_zone == "Europe/Berlin", "in the series' zone"


def test_a_whole_series_cancels_nothing():
    assert cancelled_occurrences(MASTER, [occurrence(d) for d in DATES], *WINDOW) == []


def test_an_exception_counts_where_it_started_in_the_series_not_where_it_moved():
    moved = occurrence("2026-12-08", type="exception", start={"dateTime": "2026-12-09T15:00:00.0000000", "timeZone": "UTC"},
                       end={"dateTime": "2026-12-09T16:00:00.0000000", "timeZone": "UTC"})
    listed = [occurrence(d) for d in DATES if d != "2026-12-08"] + [moved]
    assert cancelled_occurrences(MASTER, listed, *WINDOW) == []


def test_an_occurrence_without_original_start_is_placed_by_its_start():
    listed = [occurrence(d, originalStart=None) for d in DATES if d != "2026-12-15"]
    assert cancelled_occurrences(MASTER, listed, *WINDOW) == [berlin("2026-12-15")]


def test_dates_whose_neighbours_are_outside_the_window_are_not_judged():
    """An exception of such a date may have moved outside the window, where /instances does not list it."""
    window = (dt.datetime(2026, 11, 30, tzinfo=UTC), dt.datetime(2026, 12, 10, tzinfo=UTC))  # holds 1 and 8 Dec
    assert cancelled_occurrences(MASTER, [], *window) == []
    wider = (dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 12, 12, tzinfo=UTC))  # 24 Nov .. 8 Dec
    assert cancelled_occurrences(MASTER, [], *wider) == [berlin("2026-11-24"), berlin("2026-12-01")], \
        "the first date of the series judges by itself; 8 Dec's next date is outside"


def test_an_instance_that_cannot_be_placed_judges_nothing():
    listed = [occurrence(d) for d in DATES if d != "2026-12-01"]
    listed[0] = listed[0] | {"type": "exception", "originalStart": "soon"}
    assert cancelled_occurrences(MASTER, listed, *WINDOW) == []


def test_no_series_or_an_unreadable_rule_cancels_nothing():
    assert cancelled_occurrences(graph_event(id="single"), [], *WINDOW) == []
    lunar = MASTER | {"recurrence": {"pattern": {"type": "lunar", "interval": 1},
                                     "range": {"type": "noEnd", "startDate": "2026-11-24"}}}
    assert cancelled_occurrences(lunar, [], *WINDOW) == []


def test_an_all_day_series_cancels_days():
    master = graph_event(id="d1", type="seriesMaster", isAllDay=True, originalStartTimeZone="UTC",
                         start={"dateTime": "2026-11-24T00:00:00.0000000", "timeZone": "UTC"},
                         end={"dateTime": "2026-11-25T00:00:00.0000000", "timeZone": "UTC"},
                         recurrence={"pattern": {"type": "daily", "interval": 1},
                                     "range": {"type": "numbered", "startDate": "2026-11-24", "numberOfOccurrences": 3}})
    listed = [{"id": f"d1_{d}", "type": "occurrence", "originalStart": f"{d}T00:00:00Z"}
              for d in ("2026-11-24", "2026-11-26")]
    assert cancelled_occurrences(master, listed, *WINDOW) == [EventTime.on(dt.date(2026, 11, 25))]
