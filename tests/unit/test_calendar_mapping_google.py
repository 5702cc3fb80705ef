"""Google Calendar v3 events <-> canonical events: what Google sends, what we write, what Google cannot hold."""
import datetime as dt

import pytest

from services.calendar_sync.mapping import (
    GOOGLE_LIMITS,
    InvalidEvent,
    Mapped,
    ProviderLimits,
    canonical_to_crm,
    canonical_to_google,
    fit_google,
    google_to_canonical,
)
from tests.unit.test_calendar_model import at, day, guest, meeting


def google_event(**fields) -> dict:
    """An events.get resource: a one-hour meeting in Berlin, changed where a test says so."""
    values = {
        "kind": "calendar#event", "id": "abc123def", "etag": '"3181161784712000"', "status": "confirmed",
        "summary": "Review", "iCalUID": "abc123def@google.com",
        "start": {"dateTime": "2026-11-24T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-11-24T11:00:00+01:00", "timeZone": "Europe/Berlin"},
        "reminders": {"useDefault": False},
    }
    values.update(fields)
    return {name: value for name, value in values.items() if value is not None}


def test_every_field_maps_to_the_canonical_event():
    mapped = google_to_canonical(google_event(
        description="Agenda", location="Room 1", recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU"],
        attendees=[{"email": "Ann@X.com", "displayName": "Ann", "responseStatus": "accepted", "organizer": True},
                   {"email": "bob@y.com", "optional": True, "responseStatus": "needsAction"}],
        reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]},
    ))
    assert mapped.unmapped == mapped.problems == ()
    assert mapped.event == meeting(
        description="Agenda", location="Room 1", recurrence=("RRULE:FREQ=WEEKLY;BYDAY=TU",),
        attendees=(guest("ann@x.com", name="Ann", response="accepted"), guest("bob@y.com", optional=True)),
        reminders_minutes=(10,), ical_uid="abc123def@google.com",
    )


def test_a_cancelled_event_maps_to_no_event():
    assert google_to_canonical({"id": "abc123def", "status": "cancelled"}).event is None
    occurrence = {"id": "abc123def_20261201T090000Z", "status": "cancelled", "recurringEventId": "abc123def",
                  "originalStartTime": {"dateTime": "2026-12-01T10:00:00+01:00", "timeZone": "Europe/Berlin"}}
    assert google_to_canonical(occurrence).event is None


def test_an_untitled_google_event_arrives_as_not_specified_and_goes_back_untitled():
    event = google_to_canonical(google_event(summary=None)).event
    assert event.title == "" and canonical_to_crm(event)["Event_Title"] == "Not specified"
    assert canonical_to_google(event)["summary"] == ""


def test_all_day_dates_pass_through_with_googles_exclusive_end():
    event = google_to_canonical(google_event(start={"date": "2026-05-01"}, end={"date": "2026-05-02"})).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-02"))
    crm = canonical_to_crm(event)
    assert (crm["Start_DateTime"], crm["End_DateTime"]) == ("2026-05-01", "2026-05-01")
    body = canonical_to_google(event)
    assert (body["start"], body["end"]) == ({"date": "2026-05-01"}, {"date": "2026-05-02"})


def test_an_all_day_event_with_a_time_zone_is_still_the_same_dates():
    event = google_to_canonical(google_event(start={"date": "2026-05-01", "timeZone": "Pacific/Kiritimati"},
                                             end={"date": "2026-05-02", "timeZone": "Pacific/Kiritimati"})).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-02"))


def test_a_timed_event_keeps_its_time_zone_and_falls_back_to_the_calendars():
    event = google_to_canonical(google_event(start={"dateTime": "2026-11-24T04:00:00-05:00",
                                                    "timeZone": "America/New_York"})).event
    assert event.start == at("2026-11-24T04:00:00-05:00", "America/New_York")
    body = canonical_to_google(event)
    assert body["start"] == {"dateTime": "2026-11-24T04:00:00-05:00", "timeZone": "America/New_York"}
    unnamed = google_event(start={"dateTime": "2026-11-24T10:00:00+01:00"}, end={"dateTime": "2026-11-24T11:00:00+01:00"})
    assert google_to_canonical(unnamed, calendar_time_zone="Europe/Berlin").event.start.time_zone == "Europe/Berlin"
    assert google_to_canonical(unnamed).event.start == at("2026-11-24T09:00:00Z", "UTC")


def test_an_unknown_time_zone_is_reported_and_the_instant_kept_in_utc():
    mapped = google_to_canonical(google_event(start={"dateTime": "2026-11-24T10:00:00+01:00", "timeZone": "Europe/Atlantis"}))
    assert mapped.event.start == at("2026-11-24T09:00:00Z", "UTC")
    assert mapped.problems == ("start.timeZone: unknown time zone 'Europe/Atlantis', kept in UTC",)


@pytest.mark.parametrize("start, message", [
    ({"dateTime": "2026-11-24T25:00:00+01:00"}, "start.dateTime '2026-11-24T25:00:00\\+01:00' is not an RFC 3339"),
    ({"date": "2026-02-30"}, "start.date '2026-02-30' is not a date"),
    ({}, "start: neither date nor dateTime"),
    ({"dateTime": "2026-11-24T10:00:00", "timeZone": "Europe/Atlantis"}, "unknown time zone 'Europe/Atlantis' and no UTC offset"),
])
def test_a_malformed_date_or_an_unknown_zone_without_offset_cannot_be_mapped(start, message):
    with pytest.raises(InvalidEvent, match=message):
        google_to_canonical(google_event(start=start))


def test_an_end_before_the_start_is_clamped_and_reported():
    mapped = google_to_canonical(google_event(end={"dateTime": "2026-11-24T09:00:00+01:00", "timeZone": "Europe/Berlin"}))
    assert mapped.event.end == mapped.event.start and "clamped to start" in mapped.problems[0]


def test_every_popup_reminder_arrives_and_what_the_crm_cannot_hold_is_reported():
    mapped = google_to_canonical(google_event(reminders={"useDefault": False, "overrides": [
        {"method": "popup", "minutes": 5}, {"method": "email", "minutes": 1440}, {"method": "popup", "minutes": 30},
        {"method": "popup", "minutes": 60}]}))
    assert mapped.event.reminders_minutes == (5, 30, 60)
    assert mapped.unmapped == ("reminders.overrides[1]: email reminder: only popup reminders are synced",)
    defaults = google_to_canonical(google_event(reminders={"useDefault": True}))
    assert defaults.event.reminders_minutes == ()
    assert defaults.unmapped == ("reminders.useDefault: the calendar's default reminders are not synced",)


def test_rooms_are_not_attendees_and_an_incomplete_list_is_reported():
    mapped = google_to_canonical(google_event(attendeesOmitted=True, attendees=[
        {"email": "c_1889@resource.calendar.google.com", "displayName": "Room 1", "resource": True},
        {"email": "ann@x.com", "responseStatus": "tentative"}, {"displayName": "nobody"}]))
    assert mapped.event.attendees == (guest("ann@x.com", response="tentative"),)
    assert mapped.unmapped == ("attendees[0]: resource Room 1: not synced",
                               "attendees[2]: no email address (nobody): not synced")
    assert mapped.problems == ("attendeesOmitted: Google listed only some attendees",)


def test_the_body_writes_every_field_even_empty_ones_and_leaves_ids_to_the_adapter():
    body = canonical_to_google(meeting(attendees=(guest("ann@x.com", name="Ann", optional=True, response="accepted"),),
                                       reminders_minutes=(0, 10), ical_uid="uid-1"))
    assert body == {
        "summary": "Review", "description": "", "location": "",
        "start": {"dateTime": "2026-11-24T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-11-24T11:00:00+01:00", "timeZone": "Europe/Berlin"},
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 0},
                                                         {"method": "popup", "minutes": 10}]},
        "attendees": [{"email": "ann@x.com", "displayName": "Ann", "optional": True, "responseStatus": "accepted"}],
        "recurrence": [], "iCalUID": "uid-1",
    }


def test_more_than_five_reminders_or_more_than_four_weeks_ahead_are_reported_not_written():
    event = meeting(reminders_minutes=(0, 5, 10, 15, 30, 60, 50_000))
    fitted = fit_google(event)
    assert fitted.event.reminders_minutes == (0, 5, 10, 15, 30)
    assert fitted.unmapped == (
        "reminders [50000] minutes: Google Calendar holds at most 40320 minutes before the start",
        "reminders [60] minutes: Google Calendar holds 5 popup reminder(s)",
    )
    assert len(canonical_to_google(event)["reminders"]["overrides"]) == 5


def test_a_one_megabyte_description_is_cut_to_googles_limit_and_reported():
    fitted = fit_google(meeting(description="x" * 1_048_576))
    assert len(fitted.event.description) == GOOGLE_LIMITS.description_max_chars == 8192
    assert fitted.unmapped == ("description: 1048576 characters, Google Calendar holds 8192: truncated",)
    assert len(canonical_to_google(meeting(description="x" * 1_048_576))["description"]) == 8192


def test_two_thousand_attendees_are_cut_to_googles_limit_required_ones_first():
    attendees = tuple(guest(f"guest{n:04}@example.com", optional=n % 2 == 0) for n in range(2000))
    fitted = fit_google(meeting(attendees=attendees))
    assert len(fitted.event.attendees) == 500 and not any(a.optional for a in fitted.event.attendees)
    assert fitted.event.attendees[0].email == "guest0001@example.com"
    assert fitted.unmapped == (("attendees: 2000, Google Calendar holds 500: 1500 not written (optional ones first, "
                               "then by address)"),)


def test_the_limits_are_settings():
    roomy = ProviderLimits("Google Calendar", description_max_chars=None, attendees_max=None,
                           popup_reminders_max=5, reminder_minutes_max=40320)
    event = meeting(description="x" * 20_000, attendees=tuple(guest(f"g{n}@x.com") for n in range(900)))
    assert fit_google(event, roomy) == Mapped(event)


def test_an_exception_of_a_series_carries_its_original_start_and_a_malformed_one_is_refused():
    from services.calendar_sync.mapping import InvalidEvent, google_original_start
    from services.calendar_sync.model import EventTime

    cancelled = {"id": "abc_20261201T090000Z", "status": "cancelled", "recurringEventId": "abc",
                 "originalStartTime": {"dateTime": "2026-12-01T10:00:00+01:00", "timeZone": "Europe/Berlin"}}
    original = google_original_start(cancelled)
    assert original is not None and original.time_zone == "Europe/Berlin"
    assert original.instant() == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    all_day = {"recurringEventId": "abc", "originalStartTime": {"date": "2026-12-01"}}
    assert google_original_start(all_day) == EventTime.on(dt.date(2026, 12, 1))
    assert google_original_start({"id": "single", "originalStartTime": {"date": "2026-12-01"}}) is None
    with pytest.raises(InvalidEvent, match="originalStartTime"):
        google_original_start({"recurringEventId": "abc", "originalStartTime": {"dateTime": "soon"}})
