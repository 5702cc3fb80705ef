"""A series' occurrences that reach the engine while the series' CRM record is being created, with the real
Redis: kept (once each, however often delivered), then applied when the CRM's echo links the series.

The commands the engine publishes are collected from its publisher port; the broker's part is covered end
to end (tests/e2e/test_calendar_*recurring.py, test_a_first_sync_brings_a_series_...)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from schemas import ChangeSource, CrmChange, CrmCommand, CrmModule, CrmOp, Direction, Integration
from services.calendar_sync.engine import CalendarEngine
from services.calendar_sync.ports import ProviderEvent
from services.calendar_sync.series_backlog import SeriesBacklog
from services.calendar_sync.store import EventMapping, MappingStore
from tests.integration.test_google_calendar_adapter import redis  # noqa: F401  (the real Redis, a client per test)
from tests.unit.test_calendar_rules import config
from tests.unit.test_calendar_rules_series import SERIES, cancelled, edited, week

pytestmark = pytest.mark.integration


@pytest.fixture
def sent() -> list[CrmCommand]:
    return []


@pytest.fixture
def engine(redis, sent) -> CalendarEngine:  # noqa: F811
    async def publish(command: CrmCommand) -> None:
        sent.append(command)

    return CalendarEngine(redis, publish)


@pytest.fixture
def settings():
    return config(org_id="org-" + uuid.uuid4().hex[:8], integration=Integration.MICROSOFT_CALENDAR,
                  direction=Direction.TWO_WAY)


def echo_of(command: CrmCommand, record_id: str) -> CrmChange:
    return CrmChange(org_id=command.org_id, module=CrmModule.EVENTS, record_id=record_id, op=CrmOp.CREATED,
                     owner_id=command.action.owner_id, source=ChangeSource.INTEGRATION,
                     modified_at=dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC), fields=command.action.fields,
                     correlation_id=command.correlation_id)


async def test_occurrences_of_a_series_not_being_created_are_applied_at_once(engine, settings, sent):
    assert await engine.apply_provider_event(settings, None, cancelled("master_1", 1), "ann@example.com") == "skipped"
    assert await engine.apply_provider_event(settings, None, edited("master_2", 2), "ann@example.com") == "pulled"
    [create] = sent
    assert create.action.fields["Series_Id"] is None, "a series the sync does not know: as before"


async def test_kept_occurrences_become_one_exdate_update_and_exceptions_of_the_linked_series(
        engine, redis, settings, sent):  # noqa: F811
    assert await engine.apply_provider_event(settings, None, ProviderEvent("master", SERIES), "ann@x.com") == "pulled"
    [series_creation] = sent
    for remote in (cancelled("master_1", 1), edited("master_2", 2), cancelled("master_1", 1),
                   edited("master_2", 2, "Review, moved again"), cancelled("master_3", 3)):
        assert await engine.apply_provider_event(settings, None, remote, "ann@x.com") == "deferred"
    assert sent == [series_creation], "nothing written while the series has no CRM id"

    await engine.observe_crm_change(echo_of(series_creation, "crm-series"))
    update, exception = sent[1:]
    assert update.action.record_id == "crm-series"
    assert update.action.fields["Recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20300311T090000Z",
                                                  "EXDATE:20300325T090000Z"]
    assert exception.action.record_id is None and exception.action.fields["Series_Id"] == "crm-series"
    assert exception.action.fields["Event_Title"] == "Review, moved again", "the later change of the occurrence"
    assert exception.action.fields["Original_Start"] == week(2).rfc3339()
    assert not await redis.exists(SeriesBacklog._backlog(settings.key, "master")), "nothing left to replay"

    await engine.observe_crm_change(echo_of(series_creation, "crm-series"))  # the echo delivered twice
    assert len(sent) == 3

    # Once linked, a later cancellation is applied as usual, not kept.
    assert await engine.apply_provider_event(settings, None, cancelled("master_0", 0), "ann@x.com") == "pulled"


async def test_a_series_deleted_before_its_echo_drops_what_was_kept(engine, redis, settings, sent):  # noqa: F811
    await engine.apply_provider_event(settings, None, ProviderEvent("master", SERIES), "ann@x.com")
    await engine.apply_provider_event(settings, None, edited("master_2", 2), "ann@x.com")
    assert await engine.apply_provider_event(settings, None, ProviderEvent("master", None), "ann@x.com") == "deleted"
    await engine.observe_crm_change(echo_of(sent[0], "crm-series"))
    [_, delete] = sent
    assert delete.action.kind == "delete_record" and delete.action.record_id == "crm-series"
    assert not await redis.exists(SeriesBacklog._backlog(settings.key, "master"))


async def test_the_echo_of_a_creation_links_it_without_a_read_and_over_a_mapping_there_after_all(
        engine, redis, settings, sent):  # noqa: F811
    """A created record has no mapping: its link is saved as new. Should one exist (an id reused), the
    link is saved over it, not lost."""
    single = SERIES.model_copy(update={"recurrence": ()})
    for provider_id in ("new-1", "new-2"):
        assert await engine.apply_provider_event(settings, None, ProviderEvent(provider_id, single),
                                                 "ann@x.com") == "pulled"
    first, second = sent
    maps = MappingStore(redis, settings.key)
    await maps.save(EventMapping("rec-2", "someone-else", None), None)
    await engine.observe_crm_change(echo_of(first, "rec-1"))
    await engine.observe_crm_change(echo_of(second, "rec-2"))
    linked = {crm_id: await maps.by_crm_id(crm_id) for crm_id in ("rec-1", "rec-2")}
    assert (linked["rec-1"].provider_id, linked["rec-1"].version) == ("new-1", 1)
    assert (linked["rec-2"].provider_id, linked["rec-2"].version) == ("new-2", 2)
    assert (await maps.by_provider_id("new-2")).crm_id == "rec-2" and await maps.by_provider_id("someone-else") is None
