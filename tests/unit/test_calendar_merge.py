"""The three-way merge: edits on both sides are all kept; a clash goes to the later edit, the CRM on ties."""
import datetime as dt

from services.calendar_sync.mapping import fit_google, fit_graph
from services.calendar_sync.merge import Conflict, merge_three_way
from tests.unit.test_calendar_model import at, day, guest, meeting

EARLY = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
LATE = EARLY + dt.timedelta(minutes=5)
BASE = meeting(description="Agenda", location="Room 1", attendees=(guest("ann@x.com"),))


def google_holds(event):
    return fit_google(event).event


def graph_holds(event):
    return fit_graph(event).event


def test_a_field_changed_on_one_side_takes_that_sides_value():
    crm = BASE.model_copy(update={"title": "Budget review"})
    result = merge_three_way(BASE, crm, BASE, EARLY, LATE)
    assert result.merged == crm and result.to_provider and not result.to_crm and result.conflicts == ()
    provider = BASE.model_copy(update={"location": "Room 2"})
    result = merge_three_way(BASE, BASE, provider, LATE, EARLY)
    assert result.merged == provider and result.to_crm and not result.to_provider


def test_edits_to_different_fields_on_both_sides_are_all_kept():
    crm = BASE.model_copy(update={"title": "Budget review", "reminders_minutes": (10,)})
    provider = BASE.model_copy(update={"location": "Room 2", "attendees": (guest("ann@x.com"), guest("bob@y.com"))})
    result = merge_three_way(BASE, crm, provider, LATE, EARLY)
    assert result.merged == BASE.model_copy(update={
        "title": "Budget review", "reminders_minutes": (10,), "location": "Room 2",
        "attendees": (guest("ann@x.com"), guest("bob@y.com"))})
    assert result.to_crm and result.to_provider and result.conflicts == ()


def test_a_field_changed_on_both_sides_takes_the_later_edit_and_is_listed():
    crm, provider = BASE.model_copy(update={"title": "CRM title"}), BASE.model_copy(update={"title": "Provider title"})
    later_provider = merge_three_way(BASE, crm, provider, EARLY, LATE)
    assert later_provider.merged.title == "Provider title" and later_provider.to_crm and not later_provider.to_provider
    assert later_provider.conflicts == (Conflict("title", "CRM title", "Provider title", "provider"),)
    later_crm = merge_three_way(BASE, crm, provider, LATE, EARLY)
    assert later_crm.merged.title == "CRM title" and later_crm.conflicts[0].winner == "crm"


def test_the_crm_wins_ties():
    crm, provider = BASE.model_copy(update={"title": "CRM title"}), BASE.model_copy(update={"title": "Provider title"})
    assert merge_three_way(BASE, crm, provider, EARLY, EARLY).merged.title == "CRM title"


def test_both_sides_making_the_same_change_is_no_conflict_and_nothing_to_write():
    same = BASE.model_copy(update={"title": "Same"})
    result = merge_three_way(BASE, same, same, EARLY, LATE)
    assert result.merged == same and not result.to_crm and not result.to_provider and result.conflicts == ()


def test_without_a_snapshot_every_difference_is_a_clash_the_later_side_wins():
    crm = meeting(title="CRM", location="Room 1")
    provider = meeting(title="Provider", location="Room 1", description="From Google")
    result = merge_three_way(None, crm, provider, EARLY, LATE)
    assert result.merged == provider
    assert [c.field for c in result.conflicts] == ["title", "description"]
    assert merge_three_way(None, crm, provider, EARLY, EARLY).merged == crm


def test_conflicts_carry_values_as_json_for_the_admin_api():
    crm = BASE.model_copy(update={"attendees": (guest("bob@y.com"),), "end": at("2026-11-24T12:00:00+01:00", "Europe/Berlin")})
    provider = BASE.model_copy(update={"attendees": (guest("eve@z.com"),), "end": at("2026-11-24T11:30:00+01:00", "Europe/Berlin")})
    conflicts = {c.field: c for c in merge_three_way(BASE, crm, provider, EARLY, LATE).conflicts}
    assert conflicts["attendees"].crm_value == [{"email": "bob@y.com", "name": "", "optional": False, "response": "needs_action"}]
    assert conflicts["end"].provider_value == {"date": None, "date_time": "2026-11-24T11:30:00+01:00", "time_zone": "Europe/Berlin"}


def test_what_google_cannot_hold_is_no_deletion_and_the_crm_keeps_its_fuller_value():
    full = BASE.model_copy(update={"description": "x" * 20_000, "reminders_minutes": (1, 2, 3, 4, 5, 6, 7),
                                   "attendees": tuple(guest(f"g{n:03}@x.com") for n in range(700))})
    google_copy = google_holds(full)
    unchanged = merge_three_way(full, full, google_copy, EARLY, LATE, provider_holds=google_holds)
    assert unchanged.merged == full and not unchanged.to_crm and not unchanged.to_provider
    edited_in_google = google_copy.model_copy(update={"title": "Renamed"})
    result = merge_three_way(full, full, edited_in_google, EARLY, LATE, provider_holds=google_holds)
    assert result.merged == full.model_copy(update={"title": "Renamed"}) and result.to_crm and not result.to_provider


def test_graph_holding_one_reminder_is_not_taken_for_the_others_being_deleted():
    crm = BASE.model_copy(update={"reminders_minutes": (5, 15, 60)})
    result = merge_three_way(crm, crm, graph_holds(crm), EARLY, LATE, provider_holds=graph_holds)
    assert result.merged.reminders_minutes == (5, 15, 60) and not result.to_crm and not result.to_provider
    changed_in_outlook = graph_holds(crm).model_copy(update={"reminders_minutes": (30,)})
    result = merge_three_way(crm, crm, changed_in_outlook, EARLY, LATE, provider_holds=graph_holds)
    assert result.merged.reminders_minutes == (30,) and result.to_crm


def test_invitees_answers_recorded_by_the_provider_are_kept_and_never_pushed_back():
    crm = BASE.model_copy(update={"title": "Renamed", "attendees": (guest("ann@x.com"), guest("bob@y.com", response="accepted"))})
    provider = BASE.model_copy(update={"attendees": (guest("ann@x.com", response="declined"),)})
    result = merge_three_way(BASE, crm, provider, LATE, EARLY)
    assert result.merged.attendees == (guest("ann@x.com", response="declined"), guest("bob@y.com", response="accepted"))
    answered_in_outlook = BASE.model_copy(update={"attendees": (guest("ann@x.com", response="accepted"),)})
    result = merge_three_way(BASE, BASE, answered_in_outlook, EARLY, LATE)
    assert result.merged == answered_in_outlook and result.to_crm and not result.to_provider
    not_written_by_graph = BASE.model_copy(update={"attendees": (guest("ann@x.com", response="accepted"),)})
    result = merge_three_way(not_written_by_graph, not_written_by_graph, BASE, EARLY, LATE)
    assert result.merged == not_written_by_graph and not result.to_crm and not result.to_provider


def test_a_start_and_an_end_merged_apart_never_make_an_end_before_the_start():
    moved_in_crm = BASE.model_copy(update={"start": at("2026-11-24T14:00:00+01:00", "Europe/Berlin"),
                                           "end": at("2026-11-24T15:00:00+01:00", "Europe/Berlin")})
    extended_in_google = BASE.model_copy(update={"end": at("2026-11-24T11:30:00+01:00", "Europe/Berlin")})
    later_google = merge_three_way(BASE, moved_in_crm, extended_in_google, EARLY, LATE)
    assert (later_google.merged.start, later_google.merged.end) == (extended_in_google.start, extended_in_google.end)
    assert {c.field: c.winner for c in later_google.conflicts} == {"start": "provider", "end": "provider"}
    later_crm = merge_three_way(BASE, moved_in_crm, extended_in_google, LATE, EARLY)
    assert (later_crm.merged.start, later_crm.merged.end) == (moved_in_crm.start, moved_in_crm.end)


def test_a_start_made_all_day_on_one_side_takes_its_end_along():
    all_day_in_google = BASE.model_copy(update={"start": day("2026-11-24"), "end": day("2026-11-25")})
    retimed_in_crm = BASE.model_copy(update={"end": at("2026-11-24T12:00:00+01:00", "Europe/Berlin")})
    result = merge_three_way(BASE, retimed_in_crm, all_day_in_google, EARLY, LATE)
    assert (result.merged.start, result.merged.end) == (day("2026-11-24"), day("2026-11-25"))
    later_crm = merge_three_way(BASE, retimed_in_crm, all_day_in_google, LATE, EARLY)
    assert (later_crm.merged.start, later_crm.merged.end) == (retimed_in_crm.start, retimed_in_crm.end)


def test_the_crm_learns_the_meetings_uid_from_the_provider():
    result = merge_three_way(BASE, BASE, BASE.model_copy(update={"ical_uid": "abc@google.com"}), EARLY, LATE)
    assert result.merged.ical_uid == "abc@google.com" and result.to_crm and not result.to_provider


def test_what_the_provider_never_held_is_no_deletion_there():
    """Outlook was not sent the participants (that would invite them): its copy has none, and an Outlook
    edit of another field keeps the CRM's participants and asks no write back."""
    def outlook_holds(event):
        return fit_graph(event).event.model_copy(update={"attendees": ()})

    held_by_outlook = BASE.model_copy(update={"attendees": ()})
    edited = held_by_outlook.model_copy(update={"location": "Outlook room"})
    result = merge_three_way(BASE, BASE, edited, EARLY, LATE, provider_holds=outlook_holds,
                             provider_base=held_by_outlook)
    assert result.merged.attendees == BASE.attendees and result.merged.location == "Outlook room"
    assert result.to_crm and not result.to_provider and result.conflicts == ()

    dropped = BASE.model_copy(update={"attendees": ()})  # Google held the guest, and its user removed him
    result = merge_three_way(BASE, BASE, dropped, EARLY, LATE, provider_holds=google_holds, provider_base=BASE)
    assert result.merged.attendees == () and result.to_crm
