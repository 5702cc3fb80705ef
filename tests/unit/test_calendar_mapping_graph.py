"""Microsoft Graph events <-> canonical events: Windows time zones, all-day days, one reminder, patterns."""
import datetime as dt

import pytest

from services.calendar_sync.mapping import InvalidEvent, canonical_to_graph, fit_graph, graph_to_canonical
from services.calendar_sync.mapping_graph_zones import WINDOWS_TO_IANA, graph_zone_name, iana_zone_name
from services.calendar_sync.model import known_zone
from tests.unit.test_calendar_model import at, day, guest, meeting


def graph_event(**fields) -> dict:
    """An event as Graph returns it with Prefer: outlook.timezone="UTC": a one-hour meeting set in Berlin."""
    values = {
        "id": "AAMkAGI2TG93AAA=", "@odata.etag": 'W/"DwAAABYAAAA"', "subject": "Review",
        "iCalUId": "040000008200E00074C5B7101A82E00800000000",
        "start": {"dateTime": "2026-11-24T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-24T10:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "W. Europe Standard Time", "originalEndTimeZone": "W. Europe Standard Time",
        "isAllDay": False, "isCancelled": False, "isReminderOn": False, "reminderMinutesBeforeStart": 15,
        "body": {"contentType": "text", "content": ""}, "location": {"displayName": ""}, "attendees": [],
    }
    values.update(fields)
    return values


def as_graph_returns(body: dict) -> dict:
    """What Graph answers for a body we wrote, read in UTC: times converted, zones kept as originals."""
    def in_utc(value: dict) -> dict:
        local = dt.datetime.fromisoformat(value["dateTime"]).replace(tzinfo=known_zone(iana_zone_name(value["timeZone"])))
        return {"dateTime": local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}
    timed = not body["isAllDay"]
    return graph_event(
        **{key: value for key, value in body.items() if key not in ("start", "end", "attendees")},
        start=in_utc(body["start"]) if timed else body["start"], end=in_utc(body["end"]) if timed else body["end"],
        originalStartTimeZone=body["start"]["timeZone"], originalEndTimeZone=body["end"]["timeZone"],
        attendees=[dict(a, status={"response": "none", "time": "0001-01-01T00:00:00Z"}) for a in body["attendees"]],
        iCalUId=None,
    )


def test_every_field_maps_to_the_canonical_event_in_the_events_own_zone():
    mapped = graph_event(
        body={"contentType": "text", "content": "Agenda"}, location={"displayName": "Room 1"},
        isReminderOn=True, reminderMinutesBeforeStart=10,
        attendees=[{"type": "required", "status": {"response": "accepted"}, "emailAddress": {"address": "Ann@X.com", "name": "Ann"}},
                   {"type": "optional", "status": {"response": "tentativelyAccepted"},
                    "emailAddress": {"address": "bob@y.com", "name": "bob@y.com"}}],
    )
    event = graph_to_canonical(mapped).event
    assert event == meeting(description="Agenda", location="Room 1", reminders_minutes=(10,),
                            attendees=(guest("ann@x.com", name="Ann", response="accepted"),
                                       guest("bob@y.com", optional=True, response="tentative")),
                            ical_uid="040000008200E00074C5B7101A82E00800000000")
    assert event.start.date_time.hour == 10 and event.start.time_zone == "Europe/Berlin"


def test_a_removed_or_cancelled_event_maps_to_no_event():
    assert graph_to_canonical({"id": "AAMk=", "@removed": {"reason": "deleted"}}).event is None
    assert graph_to_canonical(graph_event(isCancelled=True)).event is None


def test_an_untitled_outlook_event_is_untitled():
    assert graph_to_canonical(graph_event(subject="")).event.title == ""


def test_the_body_is_written_as_text_in_the_events_zone_with_a_windows_name():
    body = canonical_to_graph(meeting(location="Room 1", description="Agenda", reminders_minutes=(10,),
                                      attendees=(guest("ann@x.com", name="Ann"), guest("bob@y.com", optional=True))))
    assert body == {
        "subject": "Review", "body": {"contentType": "text", "content": "Agenda"},
        "start": {"dateTime": "2026-11-24T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-11-24T11:00:00", "timeZone": "W. Europe Standard Time"},
        "isAllDay": False, "location": {"displayName": "Room 1"},
        "attendees": [{"emailAddress": {"address": "ann@x.com", "name": "Ann"}, "type": "required"},
                      {"emailAddress": {"address": "bob@y.com"}, "type": "optional"}],
        "isReminderOn": True, "reminderMinutesBeforeStart": 10, "recurrence": None,
    }


def test_windows_time_zone_names_convert_to_and_from_iana():
    assert iana_zone_name("W. Europe Standard Time") == "Europe/Berlin"
    assert iana_zone_name("pacific standard time") == "America/Los_Angeles"
    assert iana_zone_name("tzone://Microsoft/Utc") == iana_zone_name("UTC") == "UTC"
    assert iana_zone_name("Asia/Tokyo") == "Asia/Tokyo"  # Graph also speaks IANA
    assert iana_zone_name("tzone://Microsoft/Custom") is None and iana_zone_name("Mars Standard Time") is None
    assert graph_zone_name("Europe/Berlin") == "W. Europe Standard Time"
    assert graph_zone_name("Europe/Amsterdam") == "Europe/Amsterdam"  # a Windows name would read back as Berlin
    assert all(known_zone(iana) is not None for iana in WINDOWS_TO_IANA.values())
    assert all(iana_zone_name(graph_zone_name(iana)) == iana for iana in WINDOWS_TO_IANA.values())


def test_a_timed_event_written_and_read_back_in_utc_keeps_its_instant_and_zone():
    for zone, local in (("America/New_York", "2026-07-01T09:30:00-04:00"), ("Asia/Kolkata", "2026-07-01T09:30:00+05:30"),
                        ("Europe/Amsterdam", "2026-07-01T09:30:00+02:00"), ("UTC", "2026-07-01T09:30:00+00:00")):
        event = meeting(start=at(local, zone), end=at(local, zone))
        assert graph_to_canonical(as_graph_returns(canonical_to_graph(event))).event == event


def test_an_unknown_original_zone_is_reported_and_the_event_kept_in_utc():
    mapped = graph_to_canonical(graph_event(originalStartTimeZone="tzone://Microsoft/Custom"))
    assert mapped.event.start == at("2026-11-24T09:00:00Z", "UTC")
    assert mapped.problems == ("originalStartTimeZone: unknown time zone 'tzone://Microsoft/Custom', kept in UTC",)


@pytest.mark.parametrize("start, message", [
    ({"dateTime": "2026-11-24T09:00:00.0000000", "timeZone": "Mars Standard Time"}, "timeZone 'Mars Standard Time' is unknown"),
    ({"dateTime": "24/11/2026 09:00", "timeZone": "UTC"}, "start.dateTime '24/11/2026 09:00' is not an RFC 3339"),
    (None, "start: no dateTime"),
])
def test_a_malformed_date_or_a_wall_clock_time_in_an_unknown_zone_cannot_be_mapped(start, message):
    with pytest.raises(InvalidEvent, match=message):
        graph_to_canonical(graph_event(start=start))


def test_an_end_before_the_start_is_clamped_and_reported():
    mapped = graph_to_canonical(graph_event(end={"dateTime": "2026-11-24T08:00:00.0000000", "timeZone": "UTC"}))
    assert mapped.event.end == mapped.event.start and "clamped to start" in mapped.problems[0]


def test_all_day_events_are_midnight_to_midnight_dates():
    event = graph_to_canonical(graph_event(isAllDay=True, originalStartTimeZone="UTC", originalEndTimeZone="UTC",
                                           start={"dateTime": "2026-05-01T00:00:00.0000000", "timeZone": "UTC"},
                                           end={"dateTime": "2026-05-03T00:00:00.0000000", "timeZone": "UTC"})).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-03"))
    body = canonical_to_graph(event, all_day_zone="W. Europe Standard Time")
    assert (body["isAllDay"], body["start"], body["end"]) == (
        True, {"dateTime": "2026-05-01T00:00:00", "timeZone": "W. Europe Standard Time"},
        {"dateTime": "2026-05-03T00:00:00", "timeZone": "W. Europe Standard Time"})


@pytest.mark.parametrize("zone, start_utc, end_utc", [
    ("W. Europe Standard Time", "2026-04-30T22:00:00", "2026-05-01T22:00:00"),  # UTC shows it a day early
    ("Line Islands Standard Time", "2026-04-30T10:00:00", "2026-05-01T10:00:00"),  # UTC+14
    ("Hawaiian Standard Time", "2026-05-01T10:00:00", "2026-05-02T10:00:00"),  # UTC-10
])
def test_an_all_day_event_rendered_in_another_zone_never_lands_a_day_early_or_late(zone, start_utc, end_utc):
    raw = graph_event(isAllDay=True, originalStartTimeZone=zone, originalEndTimeZone=zone,
                      start={"dateTime": start_utc + ".0000000", "timeZone": "UTC"},
                      end={"dateTime": end_utc + ".0000000", "timeZone": "UTC"})
    event = graph_to_canonical(raw).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-02"))


def test_an_all_day_event_in_an_unknown_zone_is_taken_at_the_nearest_midnight_and_reported():
    raw = graph_event(isAllDay=True, originalStartTimeZone="tzone://Microsoft/Custom",
                      originalEndTimeZone="tzone://Microsoft/Custom",
                      start={"dateTime": "2026-04-30T22:00:00.0000000", "timeZone": "UTC"},
                      end={"dateTime": "2026-05-01T22:00:00.0000000", "timeZone": "UTC"})
    mapped = graph_to_canonical(raw)
    assert (mapped.event.start, mapped.event.end) == (day("2026-05-01"), day("2026-05-02"))
    assert "taken as 2026-05-01" in mapped.problems[1]


def test_an_html_body_arrives_as_text():
    html = "<html><head><style>p{}</style></head><body><p>Agenda</p><ul><li>budget</li></ul>Bring&nbsp;slides</body></html>"
    event = graph_to_canonical(graph_event(body={"contentType": "html", "content": html})).event
    assert event.description == "Agenda\n\n- budget\nBring slides"


def test_graph_holds_one_reminder_the_others_are_reported():
    fitted = fit_graph(meeting(reminders_minutes=(5, 15, 60)))
    assert fitted.event.reminders_minutes == (5,)
    assert fitted.unmapped == ("reminders [15, 60] minutes: Microsoft Graph holds 1 popup reminder(s)",)
    body = canonical_to_graph(meeting(reminders_minutes=(5, 15, 60)))
    assert (body["isReminderOn"], body["reminderMinutesBeforeStart"]) == (True, 5)
    assert canonical_to_graph(meeting())["isReminderOn"] is False
    assert graph_to_canonical(graph_event(isReminderOn=False, reminderMinutesBeforeStart=15)).event.reminders_minutes == ()


def test_rooms_are_not_attendees():
    mapped = graph_to_canonical(graph_event(attendees=[
        {"type": "resource", "emailAddress": {"address": "room1@x.com", "name": "Room 1"}},
        {"type": "required", "emailAddress": {"address": "ann@x.com"}}]))
    assert mapped.event.attendees == (guest("ann@x.com"),)
    assert mapped.unmapped == ("attendees[0]: resource Room 1: not synced",)


def test_two_thousand_attendees_are_cut_to_500_and_a_one_megabyte_description_is_written_whole():
    event = meeting(description="x" * 1_048_576, attendees=tuple(guest(f"guest{n:04}@example.com") for n in range(2000)))
    fitted = fit_graph(event)
    assert len(fitted.event.attendees) == 500 and len(fitted.event.description) == 1_048_576
    assert fitted.unmapped == (("attendees: 2000, Microsoft Graph holds 500: 1500 not written (optional ones first, "
                               "then by address)"),)
    assert len(canonical_to_graph(event)["attendees"]) == 500


# --- recurrence ---------------------------------------------------------------------------------

TUESDAY = {"start": at("2026-11-24T10:00:00+01:00", "Europe/Berlin"), "end": at("2026-11-24T11:00:00+01:00", "Europe/Berlin")}


@pytest.mark.parametrize("rule, pattern, span", [
    ("RRULE:FREQ=DAILY;INTERVAL=2;COUNT=10", {"type": "daily", "interval": 2},
     {"type": "numbered", "numberOfOccurrences": 10}),
    ("RRULE:FREQ=WEEKLY;BYDAY=TU,TH", {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday", "thursday"],
                                       "firstDayOfWeek": "monday"}, {"type": "noEnd"}),
    ("RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;UNTIL=20261231T225959Z;WKST=SU",
     {"type": "weekly", "interval": 2, "daysOfWeek": ["tuesday"], "firstDayOfWeek": "sunday"},
     {"type": "endDate", "endDate": "2026-12-31"}),
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=24", {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 24}, {"type": "noEnd"}),
    ("RRULE:FREQ=MONTHLY;BYDAY=-1TU", {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"],
                                       "index": "last"}, {"type": "noEnd"}),
    ("RRULE:FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=2", {"type": "relativeMonthly", "interval": 1,
                                                    "daysOfWeek": ["monday", "tuesday"], "index": "second"},
     {"type": "noEnd"}),
    ("RRULE:FREQ=YEARLY;BYMONTH=11;BYMONTHDAY=24", {"type": "absoluteYearly", "interval": 1, "month": 11,
                                                     "dayOfMonth": 24}, {"type": "noEnd"}),
    ("RRULE:FREQ=YEARLY;BYDAY=4TU;BYMONTH=11", {"type": "relativeYearly", "interval": 1, "month": 11,
                                                 "daysOfWeek": ["tuesday"], "index": "fourth"}, {"type": "noEnd"}),
])
def test_rrules_graph_has_a_pattern_for_map_both_ways(rule, pattern, span):
    event = meeting(recurrence=(rule,), **TUESDAY)
    body = canonical_to_graph(event)
    assert body["recurrence"] == {"pattern": pattern, "range": {
        **span, "startDate": "2026-11-24", "recurrenceTimeZone": "W. Europe Standard Time"}}
    assert fit_graph(event).unmapped == ()
    assert graph_to_canonical(as_graph_returns(body)).event.recurrence == event.recurrence


def test_implicit_rule_parts_are_spelled_out_from_the_start():
    body = canonical_to_graph(meeting(recurrence=("RRULE:FREQ=WEEKLY",), **TUESDAY))
    assert body["recurrence"]["pattern"]["daysOfWeek"] == ["tuesday"]
    back = graph_to_canonical(as_graph_returns(canonical_to_graph(meeting(recurrence=("RRULE:FREQ=MONTHLY",), **TUESDAY))))
    assert back.event.recurrence == ("RRULE:FREQ=MONTHLY;BYMONTHDAY=24",)


def test_an_all_day_series_ends_on_a_date():
    event = meeting(start=day("2026-11-24"), end=day("2026-11-25"), recurrence=("RRULE:FREQ=DAILY;UNTIL=20261130",))
    body = canonical_to_graph(event)
    assert body["recurrence"]["range"] == {"type": "endDate", "startDate": "2026-11-24", "endDate": "2026-11-30",
                                           "recurrenceTimeZone": "UTC"}
    assert graph_to_canonical(as_graph_returns(body)).event == event


@pytest.mark.parametrize("rule, reason", [
    ("RRULE:FREQ=DAILY;BYHOUR=9,17", "Graph has no pattern for BYHOUR"),
    ("RRULE:FREQ=MONTHLY;BYDAY=5MO", "Graph's index is first..fourth or last"),
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=-1", "Graph holds one BYMONTHDAY of 1..31"),
    ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15", "Graph holds one BYMONTHDAY of 1..31"),
    ("RRULE:FREQ=MONTHLY;BYDAY=TU", "Graph needs the same ordinal on every weekday (2TU, -1FR)"),
    ("RRULE:FREQ=HOURLY", "Graph has no HOURLY frequency"),
])
def test_an_rrule_graph_cannot_hold_is_reported_and_not_written(rule, reason):
    event = meeting(recurrence=(rule,), **TUESDAY)
    fitted = fit_graph(event)
    assert fitted.event.recurrence == () and canonical_to_graph(event)["recurrence"] is None
    assert fitted.unmapped == (f"recurrence: {rule}: {reason}",)


def test_exceptions_and_second_rules_are_reported():
    event = meeting(recurrence=("RRULE:FREQ=WEEKLY;BYDAY=TU", "EXDATE;TZID=Europe/Berlin:20261201T100000"), **TUESDAY)
    fitted = fit_graph(event)
    assert fitted.event.recurrence == ("RRULE:FREQ=WEEKLY;BYDAY=TU",)
    assert fitted.unmapped == (("recurrence: EXDATE;TZID=Europe/Berlin:20261201T100000: Graph keeps exceptions as "
                               "separate occurrences"),)
    two = fit_graph(meeting(recurrence=("RRULE:FREQ=DAILY", "RRULE:FREQ=WEEKLY"), **TUESDAY))
    assert two.event.recurrence == () and two.unmapped == ("recurrence: 2 RRULEs: Graph holds one pattern",)


def test_a_pattern_we_do_not_know_is_reported_and_the_event_still_maps():
    mapped = graph_to_canonical(graph_event(recurrence={"pattern": {"type": "lunar", "interval": 1},
                                                        "range": {"type": "noEnd", "startDate": "2026-11-24"}}))
    assert mapped.event.recurrence == () and mapped.problems == ("recurrence: unknown pattern type 'lunar': not synced",)
    broken = graph_to_canonical(graph_event(recurrence={"pattern": {"type": "absoluteYearly", "interval": 1},
                                                        "range": {"type": "noEnd", "startDate": "2026-11-24"}}))
    assert broken.problems == ("recurrence: malformed (KeyError: 'month'): not synced",)


def test_an_exception_of_an_outlook_series_carries_its_original_start_in_the_events_zone():
    from services.calendar_sync.mapping import InvalidEvent, graph_original_start
    from services.calendar_sync.model import EventTime

    exception = {"id": "ex1", "type": "exception", "seriesMasterId": "m1", "originalStart": "2026-12-01T09:00:00Z",
                 "originalStartTimeZone": "W. Europe Standard Time"}
    original = graph_original_start(exception)
    assert original is not None and original.time_zone == "Europe/Berlin"
    assert original.instant() == dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    whole_day = exception | {"isAllDay": True, "originalStart": "2026-11-30T23:00:00Z"}
    assert graph_original_start(whole_day) == EventTime.on(dt.date(2026, 12, 1)), "the day in the event's zone"
    assert graph_original_start(exception | {"type": "occurrence"}) is None, "an occurrence is the series"
    assert graph_original_start({"id": "single", "type": "singleInstance"}) is None
    with pytest.raises(InvalidEvent, match="originalStart"):
        graph_original_start(exception | {"originalStart": "soon"})
