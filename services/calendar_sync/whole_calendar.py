"""Whole-calendar work: the first sync (or a resync), the preview before enabling, and removing what a
sync put in a calendar. Each goes through every event of one user's calendar at once, where the engine's
other work is one change at a time; the per-event decisions are the engine's own.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from schemas import Direction, IntegrationConfig
from services.calendar_sync import mapping, rules, rules_series
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import CalendarProvider, ProviderEvent
from services.calendar_sync.store import EventMapping, MappingStore, ScopeState
from services.calendar_sync.sync_report import SyncReport
from services.common.logging import get_logger

if TYPE_CHECKING:
    from services.calendar_sync.engine import CalendarEngine

log = get_logger(__name__)


class WholeCalendar:
    def __init__(self, engine: CalendarEngine):
        self.engine = engine
        self.redis = engine.redis
        self.index = engine.index
        self.now = engine.now

    async def full_sync(self, config: IntegrationConfig, provider: CalendarProvider, own_address: str,
                        reason: str) -> SyncReport:
        """The first sync, or a resync: link what exists on both sides, create what is missing, no duplicates."""
        state = ScopeState(self.redis, config.key)
        log.info("full sync", scope=config.key, reason=reason)
        pulled = 0
        final = None
        page_token = None
        seen = 0
        while True:
            page = await provider.list_changes(None, config.caps.initial_window_days,
                                               config.caps.incremental_page_cap, page_token)
            for remote in rules_series.masters_first(page.events):
                if seen >= config.caps.initial_max_items:
                    break
                seen += 1
                pulled += await self.engine.apply_provider_event(config, provider, remote, own_address) == "pulled"
            if page.final_cursor is not None or page.next_cursor is None:
                final = page.final_cursor
                break
            page_token = page.next_cursor
        pushed = 0
        if config.direction != Direction.PROVIDER_TO_CRM:
            pushed = await self._push_unsynced(config, provider)
        await state.set_cursor(final)
        return SyncReport(pushed=pushed, pulled=pulled)

    async def _push_unsynced(self, config: IntegrationConfig, provider: CalendarProvider) -> int:
        """The user's CRM events the provider lacks (or holds in an older version), future first."""
        maps = MappingStore(self.redis, config.key)
        candidates: dict[str, tuple[CanonicalEvent, EventMapping | None]] = {}
        exceptions: dict[str, tuple[CanonicalEvent, tuple[str, EventTime]]] = {}
        for record_id, indexed in (await self.index.events_of(config.org_id, config.user_id)).items():
            if not indexed.in_sync:
                continue  # imported or migrated, and not touched by a person since
            current = await maps.by_crm_id(record_id)
            if current is None and indexed.created_source == "integration":
                continue  # it came from a provider: its mapping is made when the CRM's echo arrives
            try:
                event = mapping.crm_to_canonical(indexed.change.fields).event
                occurrence = mapping.crm_occurrence(indexed.change.fields) if current is None else None
            except mapping.InvalidEvent as exc:
                log.warning("crm event not synced", record_id=record_id, reason=str(exc))
                continue
            if occurrence is not None:
                exceptions[record_id] = (event, occurrence)  # written over its occurrence, once the series is
            elif current is None or current.crm_fingerprint != event.fingerprint():
                candidates[record_id] = (event, current)
        ordered = rules.first_sync_order([(rid, ev) for rid, (ev, _) in candidates.items()], self.now(),
                                         config.caps.initial_max_items)
        items = [(rid, candidates[rid][0], candidates[rid][1].provider_id if candidates[rid][1] else None)
                 for rid, _ in ordered]
        results = await provider.upsert_many(items) if items else []
        for (record_id, event, _), result in zip(items, results):
            if isinstance(result, Exception):
                raise result  # the job is retried whole: upserts already done are idempotent
            held = result.written or event
            await maps.save(EventMapping(record_id, result.provider_id, event, event.fingerprint(), held.fingerprint(),
                                         result.etag, provider_snapshot=held), candidates[record_id][1])
        written = 0
        for record_id, (event, (series_id, original_start)) in exceptions.items():
            occurrence_id = await self.engine.occurrence_of(provider, maps, series_id, original_start)
            if occurrence_id is None:
                log.warning("crm exception not synced: its series or occurrence is not in the calendar",
                            record_id=record_id, series_id=series_id)
                continue
            result = await provider.upsert(record_id, event, occurrence_id)
            held = result.written or event
            await maps.save(EventMapping(record_id, result.provider_id, event, event.fingerprint(), held.fingerprint(),
                                         result.etag, provider_snapshot=held), None)
            written += 1
        return len(items) + written

    async def preview(self, config: IntegrationConfig, provider: CalendarProvider) -> dict:
        """What enabling would do on each side, counted without writing anything."""
        remote: dict[str, ProviderEvent] = {}
        page_token = None
        while len(remote) < config.caps.initial_max_items:
            page = await provider.list_changes(None, config.caps.initial_window_days,
                                               config.caps.incremental_page_cap, page_token)
            remote.update({e.provider_id: e for e in page.events if e.event is not None})
            if page.final_cursor is not None or page.next_cursor is None:
                break
            page_token = page.next_cursor
        crm_events = {}
        for record_id, indexed in (await self.index.events_of(config.org_id, config.user_id)).items():
            if not indexed.in_sync:
                continue
            try:
                crm_events[record_id] = mapping.crm_to_canonical(indexed.change.fields).event
            except mapping.InvalidEvent:
                continue
        maps = MappingStore(self.redis, config.key)
        links = {m.crm_id: m.provider_id for m in await maps.all()}
        result = rules.preview(crm_events, remote, links)
        return dataclasses.asdict(result) if dataclasses.is_dataclass(result) else dict(result)

    async def remove_synced_events(self, config: IntegrationConfig, provider: CalendarProvider) -> int:
        """Disabling Microsoft sync: the events we put there go, the CRM keeps its own."""
        maps = MappingStore(self.redis, config.key)
        removed = 0
        delete_all = getattr(provider, "delete_all_synced", None)
        if delete_all is not None:
            removed = await delete_all()
        else:
            for current in await maps.all():
                await provider.delete(current.provider_id)
                removed += 1
        await maps.clear()
        await ScopeState(self.redis, config.key).set_cursor(None)
        return removed
