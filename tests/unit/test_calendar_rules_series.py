"""A series' occurrences kept while the series' CRM record is being created: their order, what they amount
to once the series is linked, and how they are kept (pure: no Redis)."""
import datetime as dt

from schemas import Integration
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import ProviderEvent
from services.calendar_sync.rules_series import excluding, masters_first, replay_plan
from services.calendar_sync.series_backlog import _from_json, _to_json
from tests.unit.test_calendar_rules import config

BERLIN = "Europe/Berlin"


def week(n: int) -> EventTime:
    return EventTime.at(dt.datetime(2030, 3, 4, 9, tzinfo=dt.UTC) + dt.timedelta(weeks=n), BERLIN)


SERIES = CanonicalEvent(title="Weekly review", start=week(0),
                        end=EventTime.at(dt.datetime(2030, 3, 4, 10, tzinfo=dt.UTC), BERLIN),
                        recurrence=("RRULE:FREQ=WEEKLY;COUNT=4",))


def cancelled(provider_id: str, n: int) -> ProviderEvent:
    return ProviderEvent(provider_id, None, series_id="master", original_start=week(n))


def edited(provider_id: str, n: int, title: str = "Review, moved") -> ProviderEvent:
    return ProviderEvent(provider_id, SERIES.model_copy(update={"title": title, "recurrence": ()}),
                         series_id="master", original_start=week(n))


def test_masters_come_before_the_occurrences_of_a_series_each_in_the_providers_order():
    single, master = ProviderEvent("single", SERIES), ProviderEvent("master", SERIES)
    page = [cancelled("master_1", 1), single, edited("master_2", 2), master]
    assert [e.provider_id for e in masters_first(page)] == ["single", "master", "master_1", "master_2"]
    assert masters_first([]) == []


def test_kept_occurrences_become_the_series_exdates_and_its_exceptions():
    starts, exceptions = replay_plan([cancelled("master_1", 1), edited("master_2", 2)])
    assert starts == (week(1),)
    assert [e.provider_id for e in exceptions] == ["master_2"]


def test_an_exception_cancelled_afterwards_under_another_id_is_no_exception():
    # Graph names a cancelled occurrence after its master and start, not after the exception it was.
    starts, exceptions = replay_plan([edited("AAMk-2", 2), cancelled("master@2030-03-18T09:00:00Z", 2)])
    assert starts == (week(2),) and exceptions == ()


def test_a_cancellation_reported_with_a_cancelled_event_counts_as_one():
    gone = ProviderEvent("master_1", SERIES.model_copy(update={"cancelled": True}), series_id="master",
                         original_start=week(1))
    assert replay_plan([gone]) == ((week(1),), ())


def test_nothing_kept_changes_nothing():
    assert replay_plan([]) == ((), ())


def test_excluding_adds_one_exdate_per_cancelled_start():
    target = excluding(SERIES, [week(1), week(3)])
    assert target.recurrence == ("RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20300311T090000Z", "EXDATE:20300325T090000Z")
    assert excluding(SERIES, []) == SERIES
    assert excluding(target, [week(1)]) == target, "a start excluded already stays one EXDATE"


def test_a_kept_occurrence_reads_back_as_it_was_kept():
    settings = config(integration=Integration.MICROSOFT_CALENDAR, guests_as_contacts=True)
    for remote in (edited("master_2", 2), cancelled("master_1", 1),
                   ProviderEvent("x", None, raw_problems=("bad tz",), etag='"7"', updated_at="2030-01-01T00:00:00Z")):
        assert _from_json(_to_json(settings, remote)) == (settings, remote)
