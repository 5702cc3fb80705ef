"""Which CRM changes are synced, what is our own echo, ids and meeting keys, first-sync order, guests."""
import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ChangeSource, CrmModule, CrmOp, Direction, Integration, IntegrationConfig
from services.calendar_sync.mapping import crm_to_canonical, google_to_canonical
from services.calendar_sync.rules import (
    brought_into_sync,
    crm_change_decision,
    first_sync_order,
    google_event_id,
    guests_to_add_as_contacts,
    meeting_key,
    modified_time,
    provider_change_is_echo,
    send_updates,
)
from tests.support.factories import crm_change
from tests.unit.test_calendar_model import at, day, guest, meeting

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
OURS = {"cal-7f3a"}


def config(**fields) -> IntegrationConfig:
    values = {"org_id": "org-1", "user_id": "user-1", "integration": Integration.GOOGLE_CALENDAR, "enabled": True,
              "updated_at": NOW}
    values.update(fields)
    return IntegrationConfig(**values)


def change(**fields):
    return crm_change("org-1", **fields)


# --- which CRM changes are synced ---------------------------------------------------------------


@pytest.mark.parametrize("source, synced", [
    (ChangeSource.UI, True), (ChangeSource.API, True), (ChangeSource.BULK_UPDATE, True),
    (ChangeSource.IMPORT, False), (ChangeSource.MIGRATION, False), (ChangeSource.INTEGRATION, True),
])
def test_events_created_one_by_one_or_bulk_updated_are_synced_imported_or_migrated_ones_are_not(source, synced):
    decision = crm_change_decision(change(source=source), config(), OURS)
    assert decision.sync is synced
    if not synced:
        assert decision.reason == f"changed by {source.value}: bulk loads are not synced"


def test_an_imported_event_is_synced_once_a_person_edits_or_bulk_updates_it():
    assert brought_into_sync(None, ChangeSource.IMPORT) is False
    assert brought_into_sync(False, ChangeSource.MIGRATION) is False
    assert brought_into_sync(False, ChangeSource.BULK_UPDATE) is True
    assert brought_into_sync(False, ChangeSource.UI) is True
    assert brought_into_sync(True, ChangeSource.IMPORT) is True, "once in sync, a later import keeps both sides equal"
    assert brought_into_sync(None, ChangeSource.INTEGRATION) is True, "it came from a provider"


def test_a_bulk_load_of_an_event_in_sync_is_synced_of_any_other_it_is_not():
    reimported = change(source=ChangeSource.IMPORT, op=CrmOp.UPDATED)
    assert crm_change_decision(reimported, config(), OURS, in_sync=False).sync is False
    assert crm_change_decision(reimported, config(), OURS, in_sync=True).sync
    assert crm_change_decision(reimported, config(), OURS, mapped=True).sync, "this calendar holds a copy"
    assert crm_change_decision(change(source=ChangeSource.UI), config(), OURS, in_sync=False).sync


def test_an_event_moved_to_another_owner_leaves_the_calendar_that_holds_it():
    moved = change(owner_id="user-2", op=CrmOp.UPDATED)
    decision = crm_change_decision(moved, config(), OURS, mapped=True)
    assert decision.sync and decision.remove and decision.reason == "moved to owner user-2: removed from this calendar"
    assert crm_change_decision(moved, config(), OURS, mapped=False).remove is False
    assert crm_change_decision(moved, config(direction=Direction.PROVIDER_TO_CRM), OURS, mapped=True).sync is False
    assert crm_change_decision(change(), config(), OURS, mapped=True).remove is False


def test_a_provider_modification_time_is_read_one_way_and_a_malformed_one_is_the_epoch():
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    assert modified_time("2026-11-24T10:00:00.1234567Z") == dt.datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert modified_time("2026-11-24T11:00:00+01:00") == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)
    assert modified_time("2026-11-24T10:00:00") == dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC), "no offset: UTC"
    assert modified_time("yesterday") == epoch and modified_time("") == epoch and modified_time(None) == epoch
    assert modified_time("2026-13-45T99:00:00Z") < NOW, "a malformed time never outranks a CRM edit"


def test_our_own_writeback_coming_back_is_an_echo_whoever_recognises_it():
    ours = change(source=ChangeSource.INTEGRATION, correlation_id="cal-7f3a")
    assert crm_change_decision(ours, config(), OURS) == crm_change_decision(ours, config(), lambda c: c in OURS)
    assert crm_change_decision(ours, config(), OURS).reason == "our own writeback coming back (echo)"
    another_integrations = change(source=ChangeSource.INTEGRATION, correlation_id="contacts-1")
    assert crm_change_decision(another_integrations, config(), OURS).sync


def test_only_events_of_the_configured_user_go_to_their_calendar():
    assert crm_change_decision(change(module=CrmModule.CONTACTS), config(), OURS).reason == "module Contacts is not Events"
    assert crm_change_decision(change(owner_id="user-2"), config(), OURS).reason == "the event belongs to another user"
    assert not crm_change_decision(crm_change("org-2"), config(), OURS).sync
    assert crm_change_decision(change(op=CrmOp.DELETED, fields={}), config(), OURS).sync


def test_the_direction_and_the_switch_must_allow_crm_to_provider():
    assert crm_change_decision(change(), config(direction=Direction.PROVIDER_TO_CRM), OURS).sync is False
    assert crm_change_decision(change(), config(direction=Direction.CRM_TO_PROVIDER), OURS).sync
    assert crm_change_decision(change(), config(enabled=False), OURS).reason == "the integration is disabled"
    assert crm_change_decision(change(), config(integration=Integration.MICROSOFT_CALENDAR), OURS).sync
    contacts = config(integration=Integration.MICROSOFT_CONTACTS)
    assert crm_change_decision(change(), contacts, OURS).reason == "microsoft_contacts is not a calendar integration"


# --- echoes -------------------------------------------------------------------------------------


def test_a_provider_change_equal_to_what_we_last_wrote_is_our_echo():
    written = meeting(attendees=(guest("ann@x.com"),))
    read_back = google_to_canonical({
        "summary": "Review", "attendees": [{"email": "ANN@x.com"}], "iCalUID": "x@google.com", "updated": "now",
        "start": {"dateTime": "2026-11-24T09:00:00Z", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-11-24T10:00:00Z", "timeZone": "Europe/Berlin"},
    }).event
    assert provider_change_is_echo(read_back, written.fingerprint())
    assert not provider_change_is_echo(read_back.model_copy(update={"title": "Edited"}), written.fingerprint())
    assert not provider_change_is_echo(read_back, None)
    assert not provider_change_is_echo(None, written.fingerprint())


def test_an_untitled_event_that_went_through_the_crm_is_no_change_for_google():
    untitled = google_to_canonical({"start": {"date": "2026-05-01"}, "end": {"date": "2026-05-02"}}).event
    crm_copy = crm_to_canonical({"Event_Title": "Not specified", "All_day": True, "Start_DateTime": "2026-05-01",
                                 "End_DateTime": "2026-05-01"}).event
    assert provider_change_is_echo(crm_copy, untitled.fingerprint())


# --- invitations --------------------------------------------------------------------------------


def test_a_sync_never_mails_attendees_by_itself():
    before, after = meeting(attendees=(guest("ann@x.com"),)), meeting(attendees=(guest("ann@x.com"), guest("bob@y.com")))
    assert send_updates(before, after, changed_by_user=False, org_setting="all") == "none"  # merge, resync, pull
    assert send_updates(None, after, changed_by_user=True, org_setting="all") == "none"  # a first sync
    retimed = before.model_copy(update={"title": "Moved", "start": at("2026-11-24T08:00:00Z")})
    assert send_updates(before, retimed, changed_by_user=True, org_setting="all") == "none"


def test_a_participant_list_the_user_changed_notifies_as_the_org_allows():
    before, after = meeting(attendees=(guest("ann@x.com"),)), meeting(attendees=(guest("bob@y.com"),))
    assert send_updates(before, after, changed_by_user=True, org_setting="externalOnly") == "externalOnly"
    assert send_updates(before, after, changed_by_user=True) == "none"
    answered = meeting(attendees=(guest("ann@x.com", response="accepted"),))
    assert send_updates(before, answered, changed_by_user=True, org_setting="all") == "none"


# --- ids and meeting keys -----------------------------------------------------------------------


def test_google_event_ids_are_base32hex_the_same_for_the_same_record():
    event_id = google_event_id("org-1", "user-1", "rec-1")
    assert re.fullmatch(r"[a-v0-9]{5,1024}", event_id)
    assert event_id == google_event_id("org-1", "user-1", "rec-1")
    assert len({event_id, google_event_id("org-1", "user-1", "rec-2"), google_event_id("org-1", "user-2", "rec-1"),
                google_event_id("org-2", "user-1", "rec-1")}) == 4


@given(st.lists(st.tuples(*[st.from_regex(r"[A-Za-z0-9._@\-]{1,128}", fullmatch=True)] * 3), unique=True, max_size=50))
def test_different_records_never_share_a_google_event_id(keys):
    ids = [google_event_id(*key) for key in keys]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-v0-9]{5,1024}", i) for i in ids)


def test_copies_of_one_meeting_share_a_key_whatever_the_case_of_their_uid():
    assert meeting_key(meeting(ical_uid=" 040000008200E00074C5B7101A82E008 ")) == "040000008200e00074c5b7101a82e008"
    assert meeting_key(meeting(ical_uid="abc@Google.com")) == meeting_key(meeting(ical_uid="ABC@google.com"))
    assert meeting_key(meeting()) is None and meeting_key(meeting(ical_uid="  ")) is None


# --- first sync order ---------------------------------------------------------------------------


def hours_from_now(start: float, length: float = 1):
    first = NOW + dt.timedelta(hours=start)
    return meeting(title=f"{start:+}h", start=at(first.isoformat()), end=at((first + dt.timedelta(hours=length)).isoformat()))


def test_future_events_go_first_soonest_first_then_recently_closed_ones_most_recent_first():
    events = [hours_from_now(h) for h in (-48, 72, -3, 2, -0.5, 400, -1000)]
    ordered = [e.title for e in first_sync_order(events, NOW, cap=100)]
    assert ordered == ["-0.5h", "+2h", "+72h", "+400h", "-3h", "-48h", "-1000h"]  # -0.5h is going on now


def test_the_cap_keeps_the_first_ones_and_the_window_drops_old_ones():
    events = [hours_from_now(h) for h in (-48, 72, -3, 2)]
    assert [e.title for e in first_sync_order(events, NOW, cap=3)] == ["+2h", "+72h", "-3h"]
    since = NOW - dt.timedelta(days=1)
    assert [e.title for e in first_sync_order(events, NOW, cap=10, closed_since=since)] == ["+2h", "+72h", "-3h"]
    assert first_sync_order(events, NOW, cap=0) == []


def test_pairs_come_back_as_given_and_cancelled_events_are_left_out():
    pairs = [("rec-old", hours_from_now(-5)), ("rec-new", hours_from_now(5)),
             ("rec-gone", hours_from_now(1).model_copy(update={"cancelled": True}))]
    assert [key for key, _ in first_sync_order(pairs, NOW, cap=10)] == ["rec-new", "rec-old"]


def test_a_recurring_series_counts_by_its_next_occurrence():
    weekly_since_last_year = meeting(title="weekly", start=at("2025-11-25T10:00:00+01:00", "Europe/Berlin"),
                                     end=at("2025-11-25T11:00:00+01:00", "Europe/Berlin"),
                                     recurrence=("RRULE:FREQ=WEEKLY;BYDAY=TU",))
    ended = weekly_since_last_year.model_copy(update={"title": "ended", "recurrence": ("RRULE:FREQ=WEEKLY;COUNT=3",)})
    daily_all_day = meeting(title="all-day", start=day("2026-01-01"), end=day("2026-01-02"),
                            recurrence=("RRULE:FREQ=DAILY",))
    events = [hours_from_now(-2), ended, weekly_since_last_year, hours_from_now(30), daily_all_day]
    ordered = [e.title for e in first_sync_order(events, NOW, cap=10)]
    # the all-day series is on today; the weekly one next occurs on 1 December; the ended one closed in 2025
    assert ordered == ["all-day", "+30h", "weekly", "-2h", "ended"]


def test_a_rule_that_cannot_be_read_counts_as_its_first_occurrence():
    odd = hours_from_now(-3).model_copy(update={"title": "odd", "recurrence": ("RRULE:FREQ=SOMETIMES",)})
    assert [e.title for e in first_sync_order([odd, hours_from_now(1)], NOW, cap=5)] == ["+1h", "odd"]


# --- guests as contacts -------------------------------------------------------------------------


def test_guests_that_match_no_contact_become_contacts_once_each_never_the_user():
    attendees = (guest("ann@x.com", name="Ann"), guest("bob@y.com"), guest("me@corp.com"), guest("carl@z.com"))
    new = guests_to_add_as_contacts(attendees + (guest("carl@z.com", name="Carl"),), ["BOB@Y.com"], {"Me@Corp.com"})
    assert [g.email for g in new] == ["ann@x.com", "carl@z.com"]
    assert guests_to_add_as_contacts(attendees, {"ann@x.com", "bob@y.com", "carl@z.com"}, {"me@corp.com"}) == []
