"""Whole-calendar work: the first sync (or a resync), the preview before enabling, and removing what a
sync put in a calendar. Each goes through every event of one user's calendar at once, where the engine's
other work is one change at a time; the per-event decisions are the engine's own.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from schemas import Direction, IntegrationConfig
from services.calendar_sync import mapping, rules, rules_series
from services.calendar_sync.crm_writes import creation_meeting, crm_creation
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import CalendarProvider, ProviderEvent
from services.calendar_sync.store import EventMapping, MappingStore, ScopeState
from services.calendar_sync.sync_report import SyncReport
from services.common.logging import get_logger
from services.common.tasks import cancel_unfinished

if TYPE_CHECKING:
    from services.calendar_sync.engine import CalendarEngine

log = get_logger(__name__)

WRITE_CHUNK = 1000  # events a first sync writes before it maps them (Google: 20 batches of 50; Graph: 50 of 20)


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
            # series masters before their occurrences: an occurrence then finds its series' creation asked
            taken = rules_series.masters_first(page.events)[:max(0, config.caps.initial_max_items - seen)]
            seen += len(taken)
            pulled += await self._apply_page(config, provider, taken, own_address)
            if page.final_cursor is not None or page.next_cursor is None:
                final = page.final_cursor
                break
            page_token = page.next_cursor
        pushed = 0
        if config.direction != Direction.PROVIDER_TO_CRM:
            pushed = await self._push_unsynced(config, provider)
        await state.set_cursor(final)
        return SyncReport(pushed=pushed, pulled=pulled)

    async def _apply_page(self, config: IntegrationConfig, provider: CalendarProvider, events: list[ProviderEvent],
                          own_address: str) -> int:
        """A page of the calendar, in order, as the engine applies each event; how many went to the CRM.

        Most of a first sync's events are new to the CRM: each run of those is created with a few round
        trips for the whole run (mappings, meeting claims and pending creations read or written together),
        with the engine's own decisions; any other event goes through the engine one by one."""
        known = await MappingStore(self.redis, config.key).by_provider_ids([e.provider_id for e in events])
        pulled = 0
        run: list[ProviderEvent] = []
        for remote in events:
            if self._new_to_crm(config, remote, known):
                run.append(remote)
                continue
            pulled += await self._create_in_crm(config, run, own_address)
            run = []
            pulled += await self.engine.apply_provider_event(config, provider, remote, own_address) == "pulled"
        return pulled + await self._create_in_crm(config, run, own_address)

    @staticmethod
    def _new_to_crm(config: IntegrationConfig, remote: ProviderEvent, known: dict[str, EventMapping]) -> bool:
        """An event the engine would ask the CRM to create, deciding on nothing but the event: live, not
        mapped, not written by us (no CRM record id), not an exception of a series, synced to the CRM."""
        return (remote.event is not None and not remote.event.cancelled and remote.provider_id not in known
                and not remote.crm_record_id and not remote.series_id
                and config.direction != Direction.CRM_TO_PROVIDER)

    async def _create_in_crm(self, config: IntegrationConfig, run: list[ProviderEvent], own_address: str) -> int:
        """The CRM creations of a run of new events (see `_new_to_crm`), as the engine's `_link_or_create`
        makes each: guests as contacts, the meeting claimed, the creation remembered, then the command."""
        if not run:
            return 0
        if config.guests_as_contacts:
            for remote in run:
                await self.engine.crm.add_guests_as_contacts(config, remote.event.attendees, own_address)
        meetings = [m for m in (creation_meeting(r) for r in run) if m]
        owners = await self.index.claim_meetings(config.org_id, meetings, config.user_id)
        creations = [crm_creation(config, r, own_address, owners.get(creation_meeting(r), config.user_id), {})
                     for r in run]
        await self.engine.pending.put_many([(c.correlation_id, c.pending) for c in creations])
        for creation in creations:
            await self.engine.crm.send(config, creation.action, creation.idempotency, creation.correlation_id)
        return len(run)

    async def _push_unsynced(self, config: IntegrationConfig, provider: CalendarProvider) -> int:
        """The user's CRM events the provider lacks (or holds in an older version), future first."""
        maps = MappingStore(self.redis, config.key)
        candidates: dict[str, tuple[CanonicalEvent, EventMapping | None]] = {}
        exceptions: dict[str, tuple[CanonicalEvent, tuple[str, EventTime]]] = {}
        # imported or migrated events, not touched by a person since, stay out
        synced = {rid: ix for rid, ix in (await self.index.events_of(config.org_id, config.user_id)).items()
                  if ix.in_sync}
        mapped = await maps.by_crm_ids(list(synced))
        for record_id, indexed in synced.items():
            current = mapped.get(record_id)
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
        await self._write_in_chunks(provider, maps, items, candidates)
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

    async def _write_in_chunks(self, provider: CalendarProvider, maps: MappingStore, items: list,
                               candidates: dict[str, tuple[CanonicalEvent, EventMapping | None]]) -> None:
        """Write the items in order, WRITE_CHUNK at a time, each chunk's mappings saved in one round trip.
        The provider always holds the next chunk besides the one awaited: it maps the next writes while
        the current ones are at the provider, and has writes to send while a chunk's mappings are saved.
        A failed write is raised once the others of its chunk are mapped: the job is retried whole, and
        what was written and mapped is skipped then (upserts already done are idempotent, by the provider
        ids derived from the CRM record)."""
        chunks = [items[i:i + WRITE_CHUNK] for i in range(0, len(items), WRITE_CHUNK)]
        writing = [asyncio.ensure_future(provider.upsert_many(chunk)) for chunk in chunks[:2]]
        try:
            for number, chunk in enumerate(chunks):
                results = await writing[number]
                if number + 2 < len(chunks):
                    writing.append(asyncio.ensure_future(provider.upsert_many(chunks[number + 2])))
                pairs, failures = [], []
                for (record_id, event, _), result in zip(chunk, results):
                    if isinstance(result, Exception):
                        failures.append(result)
                        continue
                    held = result.written or event
                    pairs.append((EventMapping(record_id, result.provider_id, event, event.fingerprint(),
                                               held.fingerprint(), result.etag, provider_snapshot=held),
                                  candidates[record_id][1]))
                await maps.save_many(pairs)
                if failures:
                    raise failures[0]
        finally:
            await cancel_unfinished(writing)

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
