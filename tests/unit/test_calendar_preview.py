"""Preview: what enabling (or re-enabling) a configuration would do on each side, counted without writing."""
import datetime as dt

from schemas import Direction
from services.calendar_sync.ports import ProviderEvent
from services.calendar_sync.rules import Preview, preview
from tests.unit.test_calendar_model import at, meeting

REVIEW, STANDUP, OFFSITE = meeting(title="Review"), meeting(title="Standup"), meeting(title="Offsite")


def test_a_first_enable_creates_each_sides_events_on_the_other():
    result = preview({"rec-1": REVIEW, "rec-2": STANDUP}, {"g1": OFFSITE}, {})
    assert result == Preview(create_in_provider=2, create_in_crm=1)


def test_re_enabling_after_deleting_the_configuration_duplicates_nothing():
    crm = {"rec-1": REVIEW, "rec-2": STANDUP}
    ours = {"g1": ProviderEvent("g1", REVIEW, crm_record_id="rec-1"),
            "g2": ProviderEvent("g2", STANDUP.model_copy(update={"location": "Room 9"}), crm_record_id="rec-2")}
    result = preview(crm, ours, mappings={})  # the mapping store was lost: our extended property links them
    assert result == Preview(link=2, update_in_provider=1)


def test_kept_mappings_are_updated_where_the_sides_differ_the_later_edit_winning():
    crm = {"rec-1": REVIEW, "rec-2": STANDUP}
    provider = {"g1": ProviderEvent("g1", REVIEW), "g2": ProviderEvent(
        "g2", STANDUP.model_copy(update={"title": "Daily"}), updated_at="2026-11-23T10:00:00Z")}
    mappings = {"rec-1": "g1", "rec-2": "g2"}
    assert preview(crm, provider, mappings) == Preview(update_in_crm=1)  # the CRM's time is unknown: older
    crm_later = {"rec-2": dt.datetime(2026, 11, 23, 11, 0, tzinfo=dt.UTC)}
    assert preview(crm, provider, mappings, crm_modified_at=crm_later) == Preview(update_in_provider=1)


def test_an_event_already_on_both_sides_as_the_same_meeting_is_linked_not_duplicated():
    shared = meeting(title="Kick-off", ical_uid="040000008200E00074C5B7101A82E008")
    crm = {"rec-1": shared}
    provider = {"AAMk1": meeting(title="Kick-off", ical_uid="040000008200e00074c5b7101a82e008")}
    assert preview(crm, provider, {}) == Preview(link=1)


def test_copies_of_one_meeting_in_the_provider_become_one_crm_event():
    copy = meeting(title="All hands", ical_uid="uid-all-hands")
    provider = {"g1": copy, "g2": copy.model_copy(update={"location": "Room 2"}), "g3": OFFSITE}
    assert preview({}, provider, {}) == Preview(create_in_crm=2)


def test_what_one_side_deleted_while_sync_was_off_is_deleted_on_the_other():
    crm = {"rec-1": REVIEW, "rec-2": STANDUP}  # rec-3 was deleted in the CRM
    provider = {"g1": REVIEW, "g3": OFFSITE, "g4": ProviderEvent("g4", None)}  # g2 was deleted in the provider
    mappings = {"rec-1": "g1", "rec-2": "g2", "rec-3": "g3"}
    assert preview(crm, provider, mappings) == Preview(delete_in_crm=1, delete_in_provider=1)


def test_a_crm_event_older_than_the_listed_window_is_not_taken_for_deleted():
    old = meeting(title="Old", start=at("2025-01-10T10:00:00Z"), end=at("2025-01-10T11:00:00Z"))
    since = dt.datetime(2026, 8, 24, tzinfo=dt.UTC)
    assert preview({"rec-1": old}, {}, {"rec-1": "g1"}, listed_since=since) == Preview()
    assert preview({"rec-1": old}, {}, {"rec-1": "g1"}) == Preview(delete_in_crm=1)


def test_the_direction_leaves_out_the_writes_it_does_not_allow():
    crm = {"rec-1": REVIEW, "rec-2": STANDUP}
    provider = {"g1": OFFSITE, "g2": STANDUP.model_copy(update={"title": "Daily"})}
    mappings = {"rec-2": "g2"}
    assert preview(crm, provider, mappings, direction=Direction.CRM_TO_PROVIDER) == \
        Preview(create_in_provider=1, update_in_provider=1)
    assert preview(crm, provider, mappings, direction=Direction.PROVIDER_TO_CRM) == \
        Preview(create_in_crm=1, update_in_crm=1)
    gone = {"rec-1": REVIEW}
    assert preview(gone, {}, {"rec-1": "g1"}, direction=Direction.CRM_TO_PROVIDER) == Preview(create_in_provider=1)
