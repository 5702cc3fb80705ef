"""CRM event records <-> canonical events: the field names, the all-day and time zone rules, bad input."""
import datetime as dt

import pytest

from services.calendar_sync.mapping import InvalidEvent, canonical_to_crm, changed_crm_fields, crm_to_canonical
from services.calendar_sync.model import UNTITLED
from services.common.retry import PermanentError
from tests.unit.test_calendar_model import at, day, guest, meeting


def crm_event(**fields) -> dict:
    """A CRM record's fields: a one-hour meeting in Berlin, changed where a test says so."""
    values = {"Event_Title": "Review", "Start_DateTime": "2026-11-24T10:00:00+01:00",
              "End_DateTime": "2026-11-24T11:00:00+01:00", "All_day": False, "Time_Zone": "Europe/Berlin"}
    values.update(fields)
    return {name: value for name, value in values.items() if value is not None}


def test_every_field_maps_to_the_canonical_event_and_back():
    fields = crm_event(
        Venue="Room 1", Description="Agenda:\n- budget",
        Participants=[{"type": "contact", "Email": "ann@x.com", "name": "Ann", "status": "accepted", "optional": False},
                      {"type": "email", "Email": "bob@y.com", "name": "", "status": "tentative", "optional": True}],
        Reminders=[{"minutes": 10, "method": "popup"}, {"minutes": 60, "method": "popup"}],
        Recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU", "EXDATE;TZID=Europe/Berlin:20261201T100000"],
        ICal_UID="uid-1@crm",
    )
    mapped = crm_to_canonical(fields)
    assert mapped.unmapped == mapped.problems == ()
    assert mapped.event == meeting(
        location="Room 1", description="Agenda:\n- budget",
        attendees=(guest("ann@x.com", name="Ann", response="accepted"),
                   guest("bob@y.com", optional=True, response="tentative")),
        reminders_minutes=(10, 60), recurrence=tuple(fields["Recurrence"]), ical_uid="uid-1@crm",
    )
    assert canonical_to_crm(mapped.event, current=fields) == fields


def test_an_untitled_event_is_not_specified_in_the_crm_and_not_specified_is_untitled_elsewhere():
    assert canonical_to_crm(meeting(title=""))["Event_Title"] == UNTITLED
    from_crm = crm_to_canonical(crm_event(Event_Title=UNTITLED)).event
    assert from_crm.title == ""
    # so the CRM's copy of an untitled provider event is no change to write back (no echo):
    assert from_crm.fingerprint() == meeting(title="").fingerprint()
    assert crm_to_canonical(crm_event(Event_Title=None)).event.title == ""


def test_a_timed_event_keeps_its_time_zone():
    event = crm_to_canonical(crm_event(Start_DateTime="2026-07-01T09:30:00-04:00",
                                       End_DateTime="2026-07-01T10:00:00-04:00", Time_Zone="America/New_York")).event
    assert event.start == at("2026-07-01T09:30:00-04:00", "America/New_York")
    assert canonical_to_crm(event)["Start_DateTime"] == "2026-07-01T09:30:00-04:00"
    assert canonical_to_crm(event)["Time_Zone"] == "America/New_York"


def test_a_local_time_is_read_in_the_events_zone():
    event = crm_to_canonical(crm_event(Start_DateTime="2026-07-01T09:30:00", End_DateTime="2026-07-01T10:00:00")).event
    assert event.start.rfc3339() == "2026-07-01T09:30:00+02:00"


def test_an_all_day_event_is_stored_as_dates_with_an_inclusive_end():
    event = crm_to_canonical(crm_event(All_day=True, Start_DateTime="2026-05-01", End_DateTime="2026-05-01",
                                       Time_Zone="")).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-02"))  # canonical end is exclusive
    back = canonical_to_crm(event)
    assert (back["All_day"], back["Start_DateTime"], back["End_DateTime"]) == (True, "2026-05-01", "2026-05-01")
    three_days = crm_to_canonical(crm_event(All_day=True, Start_DateTime="2026-05-01", End_DateTime="2026-05-03")).event
    assert three_days.end == day("2026-05-04")


@pytest.mark.parametrize("start, end", [
    ("2026-05-01T00:00:00+14:00", "2026-05-01T23:59:00+14:00"),  # UTC would make it 30 April
    ("2026-05-01T00:00:00-11:00", "2026-05-01T23:59:59-11:00"),  # UTC would make it end on 2 May
    ("2026-05-01T00:00:00+02:00", "2026-05-02T00:00:00+02:00"),  # an exclusive midnight end
    ("2026-05-01", "2026-05-01"),
])
def test_an_all_day_event_never_lands_a_day_early_or_late(start, end):
    event = crm_to_canonical(crm_event(All_day=True, Start_DateTime=start, End_DateTime=end)).event
    assert (event.start, event.end) == (day("2026-05-01"), day("2026-05-02"))


def test_a_bare_date_start_without_all_day_is_an_all_day_event():
    event = crm_to_canonical(crm_event(All_day=None, Start_DateTime="2026-05-01", End_DateTime="2026-05-02")).event
    assert event.start.all_day and event.end == day("2026-05-03")


def test_an_end_before_the_start_is_clamped_to_the_start_and_reported():
    mapped = crm_to_canonical(crm_event(End_DateTime="2026-11-24T09:00:00+01:00"))
    assert mapped.event.end == mapped.event.start
    assert mapped.problems == ("end 2026-11-24T09:00:00+01:00 before start: clamped to start",)
    all_day = crm_to_canonical(crm_event(All_day=True, Start_DateTime="2026-05-03", End_DateTime="2026-05-01"))
    assert (all_day.event.start, all_day.event.end) == (day("2026-05-03"), day("2026-05-04"))
    assert "clamped to one day" in all_day.problems[0]


def test_a_missing_end_is_the_start_for_timed_events_and_one_day_for_all_day_ones():
    timed = crm_to_canonical(crm_event(End_DateTime=None))
    assert timed.event.end == timed.event.start and timed.problems == ("End_DateTime: missing, set to the start",)
    assert crm_to_canonical(crm_event(All_day=True, Start_DateTime="2026-05-01", End_DateTime=None)).event.end \
        == day("2026-05-02")


def test_an_unknown_time_zone_falls_back_to_utc_only_when_the_offset_fixes_the_instant():
    mapped = crm_to_canonical(crm_event(Time_Zone="Mars/Olympus_Mons"))
    assert mapped.event.start == at("2026-11-24T09:00:00Z", "UTC")
    assert mapped.problems[0] == "Time_Zone: unknown time zone 'Mars/Olympus_Mons', kept in UTC"
    with pytest.raises(InvalidEvent, match="unknown time zone 'Mars/Olympus_Mons' and no UTC offset"):
        crm_to_canonical(crm_event(Time_Zone="Mars/Olympus_Mons", Start_DateTime="2026-11-24T10:00:00"))


def test_an_event_that_cannot_be_mapped_is_a_permanent_error_naming_the_field():
    assert issubclass(InvalidEvent, PermanentError)
    with pytest.raises(InvalidEvent, match="Start_DateTime '2026-11-31T10:00:00\\+01:00' is not an RFC 3339"):
        crm_to_canonical(crm_event(Start_DateTime="2026-11-31T10:00:00+01:00"))
    with pytest.raises(InvalidEvent, match="End_DateTime 'soon' is not"):
        crm_to_canonical(crm_event(End_DateTime="soon"))
    with pytest.raises(InvalidEvent, match="Start_DateTime: missing"):
        crm_to_canonical(crm_event(Start_DateTime=None))
    with pytest.raises(InvalidEvent, match="no UTC offset and no time zone"):
        crm_to_canonical(crm_event(Start_DateTime="2026-11-24T10:00:00", Time_Zone=None))
    with pytest.raises(InvalidEvent, match="is not a date"):
        crm_to_canonical(crm_event(All_day=True, Start_DateTime="May 1st"))


def test_participants_are_lower_cased_sorted_and_once_each_and_addressless_ones_are_reported():
    mapped = crm_to_canonical(crm_event(Participants=[
        {"type": "email", "Email": "Zed@X.com", "status": "declined"},
        {"type": "contact", "Email": "ANN@x.com", "name": "Ann"},
        {"type": "contact", "Email": "ann@x.com", "status": "accepted"},
        {"type": "contact", "name": "No Mail"},
        {"type": "user", "Email": "eve@x.com", "status": "maybe"},
        "stray",
    ]))
    assert mapped.event.attendees == (guest("ann@x.com", name="Ann", response="accepted"), guest("eve@x.com"),
                                      guest("zed@x.com", response="declined"))
    assert mapped.unmapped == ("Participants[3]: no email address (No Mail): not synced",)
    assert mapped.problems == ("Participants[4]: unknown status 'maybe', taken as needs_action",
                               "Participants[5]: 'stray' is not an object: skipped")


def test_every_popup_reminder_is_kept_and_email_reminders_are_reported():
    mapped = crm_to_canonical(crm_event(Reminders=[
        {"minutes": 5, "method": "popup"}, {"minutes": 1440, "method": "popup"}, {"minutes": 30},
        {"minutes": 60, "method": "email"}, {"minutes": -5, "method": "popup"},
    ]))
    assert mapped.event.reminders_minutes == (5, 30, 1440)
    assert mapped.unmapped == ("Reminders[3]: email reminder: only popup reminders are synced",)
    assert mapped.problems == ("Reminders[4]: reminder minutes -5 is not a whole number >= 0: skipped",)


def test_lines_that_are_no_recurrence_rule_are_reported_and_skipped():
    mapped = crm_to_canonical(crm_event(Recurrence=["DTSTART:20261124T090000Z", "RRULE:FREQ=DAILY;COUNT=3"]))
    assert mapped.event.recurrence == ("RRULE:FREQ=DAILY;COUNT=3",)
    assert "Recurrence[0]" in mapped.problems[0]


def test_writing_back_keeps_what_only_the_crm_holds():
    current = crm_event(
        Participants=[{"type": "contact", "Email": "Ann@x.com", "name": "Ann", "status": "accepted", "optional": False},
                      {"type": "contact", "name": "No Mail", "status": "needs_action"},
                      {"type": "contact", "name": "No Mail Either"}],
        Reminders=[{"minutes": 10, "method": "popup"}, {"minutes": 60, "method": "email"}],
    )
    from_provider = meeting(attendees=(guest("ann@x.com", name="Ann", response="declined"), guest("new@z.com")),
                            reminders_minutes=(15,))
    fields = canonical_to_crm(from_provider, current=current)
    assert fields["Participants"] == [
        {"type": "contact", "Email": "ann@x.com", "name": "Ann", "status": "declined", "optional": False},
        {"type": "email", "Email": "new@z.com", "name": "", "status": "needs_action", "optional": False},
        {"type": "contact", "name": "No Mail", "status": "needs_action"},
        {"type": "contact", "name": "No Mail Either"},
    ]
    assert fields["Reminders"] == [{"minutes": 15, "method": "popup"}, {"minutes": 60, "method": "email"}]


def test_writing_back_clears_what_the_provider_cleared():
    fields = canonical_to_crm(meeting(), current=crm_event(Venue="Room 1", Description="old", Recurrence=["RRULE:FREQ=DAILY"]))
    assert (fields["Venue"], fields["Description"], fields["Recurrence"], fields["Participants"]) == ("", "", [], [])


def test_a_one_megabyte_description_and_two_thousand_participants_map_whole():
    participants = [{"type": "email", "Email": f"guest{n:04}@example.com"} for n in range(2000)]
    mapped = crm_to_canonical(crm_event(Description="x" * 1_048_576, Participants=participants))
    assert len(mapped.event.description) == 1_048_576 and len(mapped.event.attendees) == 2000
    assert mapped.unmapped == mapped.problems == ()
    assert len(canonical_to_crm(mapped.event)["Participants"]) == 2000


def test_the_end_of_an_all_day_event_is_never_before_its_start_when_written_back():
    odd = meeting(start=day("2026-05-01"), end=day("2026-05-01"))  # built by hand: an empty range
    assert canonical_to_crm(odd)["End_DateTime"] == "2026-05-01"
    assert dt.date.fromisoformat(canonical_to_crm(odd)["Start_DateTime"]) == dt.date(2026, 5, 1)


def test_loosely_typed_values_are_read_as_meant():
    assert not crm_to_canonical(crm_event(All_day="false")).event.start.all_day
    assert crm_to_canonical(crm_event(All_day="true", Start_DateTime="2026-05-01", End_DateTime="2026-05-01")).event.start.all_day
    lines = crm_to_canonical(crm_event(Recurrence="RRULE:FREQ=DAILY;COUNT=3\nEXDATE:20261125T090000Z")).event.recurrence
    assert lines == ("RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20261125T090000Z")
    with pytest.raises(InvalidEvent, match="is not an RFC 3339"):
        crm_to_canonical(crm_event(All_day=True, Start_DateTime="2026-05-01 and then some"))


def test_a_finding_about_both_ends_is_reported_once():
    assert len(crm_to_canonical(crm_event(Time_Zone="Mars/Olympus_Mons")).problems) == 1


def test_a_writeback_carries_only_the_fields_that_changed_so_an_unheard_crm_edit_survives():
    before = meeting(location="Room 1")
    assert changed_crm_fields(before, before.model_copy(update={"location": "Room 2"})) == {"Venue": "Room 2"}
    retitled = changed_crm_fields(before, before.model_copy(update={"title": "", "description": "Agenda"}))
    assert retitled == {"Event_Title": UNTITLED, "Description": "Agenda"}
    assert changed_crm_fields(before, before) == {}
    assert changed_crm_fields(None, before) == canonical_to_crm(before), "nothing known: every field"


def test_a_changed_time_range_is_written_whole_and_participants_keep_their_crm_type():
    before = meeting(attendees=(guest("ann@x.com"),))
    moved = before.model_copy(update={"end": at("2026-11-24T12:00:00+01:00", "Europe/Berlin")})
    assert set(changed_crm_fields(before, moved)) == {"All_day", "Start_DateTime", "End_DateTime", "Time_Zone"}
    answered = before.model_copy(update={"attendees": (guest("ann@x.com", response="accepted"),)})
    current = {"Participants": [{"type": "contact", "Email": "ann@x.com"}]}
    assert changed_crm_fields(before, answered, current)["Participants"] == [
        {"type": "contact", "Email": "ann@x.com", "name": "", "status": "accepted", "optional": False}]


def test_an_exception_of_a_series_names_its_series_and_original_start():
    from services.calendar_sync.mapping import crm_occurrence

    timed = crm_occurrence({"Series_Id": "rec-1", "Original_Start": "2026-12-01T10:00:00+01:00",
                            "Time_Zone": "Europe/Berlin"})
    assert timed == ("rec-1", at("2026-12-01T10:00:00+01:00", "Europe/Berlin"))
    assert crm_occurrence({"Series_Id": "rec-1", "Original_Start": "2026-12-01"}) == ("rec-1", day("2026-12-01"))
    assert crm_occurrence({"Event_Title": "Single"}) is None
    with pytest.raises(InvalidEvent, match="Original_Start"):
        crm_occurrence({"Series_Id": "rec-1", "Original_Start": "first Monday"})
    with pytest.raises(InvalidEvent, match="no UTC offset"):
        crm_occurrence({"Series_Id": "rec-1", "Original_Start": "2026-12-01T10:00:00"})
