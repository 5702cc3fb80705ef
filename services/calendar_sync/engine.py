"""The calendar sync engine: one user's calendar at one provider <-> that user's CRM events.

It is the same for Google and Microsoft: it speaks to a `CalendarProvider` (ports.py), decides with
the pure rules and mapping, keeps its state in the stores, and writes back to the CRM by publishing
commands. Each public method is one unit of work a worker runs for one message, in order per user;
every write it makes is idempotent, so a message handled twice (a redelivery after a crash) changes
nothing the second time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from schemas import (
    ChangeSource, CrmChange, CrmCommand, CrmModule, CrmOp, DeleteRecord, Direction, Integration, IntegrationConfig,
    UpsertRecord,
)
from services.calendar_sync import mapping, rules
from services.calendar_sync.model import Attendee, CanonicalEvent, EventTime, exception_dates, with_exception_date
from services.calendar_sync.ports import CalendarProvider, ChangedMeanwhile, CursorExpired, ProviderEvent
from services.calendar_sync.store import (
    CrmIndex, EventMapping, MappingStore, OrgCalendarSettings, PendingCreation, PendingCreations, ScopeState,
)
from services.common.logging import get_logger

log = get_logger(__name__)

CORRELATION_PREFIX = "calendar_sync:"


def is_our_correlation(correlation_id: str | None) -> bool:
    return bool(correlation_id) and correlation_id.startswith(CORRELATION_PREFIX)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CrmObservation:
    """What indexing a CRM change found: our own echo (not synced again), and whose calendars it concerns:
    its owner's, and the one it moved away from."""

    echo: bool
    owners: tuple[str, ...] = ()


PERSON_SOURCES = frozenset({ChangeSource.UI, ChangeSource.API, ChangeSource.BULK_UPDATE})
"""Changes a CRM user made: only these may notify attendees (per the org's setting), never a sync's own writes."""


@dataclass(frozen=True)
class SyncReport:
    """What one unit of work did, for logs, tests and the preview."""

    pushed: int = 0
    pulled: int = 0
    deleted: int = 0
    skipped: int = 0
    conflicts: int = 0


CommandPublisher = Callable[[CrmCommand], Awaitable[None]]


class CalendarEngine:
    def __init__(self, redis, publish_command: CommandPublisher, now: Callable[[], dt.datetime] | None = None):
        self.redis = redis
        self.publish_command = publish_command
        self.index = CrmIndex(redis)
        self.pending = PendingCreations(redis)
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))

    # --- the CRM's side ---------------------------------------------------------------------------

    async def observe_crm_change(self, change: CrmChange) -> CrmObservation:
        """Index a CRM change; say whether it is ours coming back (an echo) and whose calendars it concerns."""
        if change.module == CrmModule.CONTACTS:
            await self.index.record_contact(change)
        if change.module != CrmModule.EVENTS:
            return CrmObservation(echo=False)
        moved_from = await self.index.record_event(change)
        owners = (change.owner_id, moved_from) if moved_from else (change.owner_id,)
        if not is_our_correlation(change.correlation_id):
            return CrmObservation(echo=False, owners=owners)
        taken = await self.pending.take(change.correlation_id)
        if taken is not None and taken[1]:  # deleted at the provider before its CRM record existed
            await self._command(change.org_id, taken[0].scope, DeleteRecord(module=CrmModule.EVENTS,
                                                                            record_id=change.record_id),
                                f"delete:{change.record_id}")
        elif taken is not None:  # the CRM created the event we asked for: now both ids are known
            pending = taken[0]
            log.debug("crm creation linked", scope=pending.scope, provider_id=pending.provider_id,
                     record_id=change.record_id)
            maps = MappingStore(self.redis, pending.scope)
            previous = await maps.by_crm_id(change.record_id)
            crm_event = mapping.crm_to_canonical(change.fields).event
            await maps.save(EventMapping(change.record_id, pending.provider_id, pending.snapshot,
                                         crm_event.fingerprint() if crm_event else None,
                                         pending.provider_fingerprint, pending.etag,
                                         crm_modified_at=change.modified_at.isoformat(),
                                         provider_snapshot=pending.snapshot), previous)
        return CrmObservation(echo=True, owners=owners)

    async def push_crm_change(self, config: IntegrationConfig, change: CrmChange,
                              provider: CalendarProvider) -> SyncReport:
        """A CRM event changed: write it to the provider at once (merging with the provider's edits).

        An event moved to another owner leaves this calendar (its new owner's sync creates it there).
        """
        maps = MappingStore(self.redis, config.key)
        current = await maps.by_crm_id(change.record_id)
        indexed = await self.index.event(config.org_id, change.owner_id, change.record_id)
        decision = rules.crm_change_decision(change, config, is_our_correlation, mapped=current is not None,
                                             in_sync=indexed.in_sync if indexed else None)
        if not decision.sync:
            log.info("crm change not synced", record_id=change.record_id, reason=decision.reason)
            return SyncReport(skipped=1)
        if change.op == "deleted" or decision.remove:
            if current is not None:
                await provider.delete(current.provider_id)
                await maps.remove(current)
                log.info("crm event removed from the calendar", record_id=change.record_id, reason=decision.reason)
                return SyncReport(deleted=1)
            return SyncReport(skipped=1)
        made_by = change
        if indexed is not None and indexed.change.modified_at > change.modified_at:
            change = indexed.change  # the CRM holds a later version already: write that, not an older one
        mapped = mapping.crm_to_canonical(change.fields)
        if mapped.problems:
            log.warning("crm event mapped with problems", record_id=change.record_id, problems=mapped.problems)
        crm_event = mapped.event
        if current is not None and current.crm_fingerprint == crm_event.fingerprint():
            return SyncReport(skipped=1)  # nothing the provider holds has changed
        if current is not None and current.crm_modified_at \
                and change.modified_at <= rules.modified_time(current.crm_modified_at):
            # A pull merged this CRM version (or a later one) already: written again, it would undo the
            # provider's edits that merge kept.
            log.info("crm change already merged", record_id=change.record_id)
            return SyncReport(skipped=1)
        target, to_crm, conflicts = crm_event, False, ()
        merges = current is not None and current.snapshot is not None and config.direction == Direction.TWO_WAY
        # Where the provider writes conditionally, the change is written at once, valid only while the
        # provider holds the version last synced (its etag); only when refused is the event read to merge.
        if_match = current.etag if merges and provider.conditional_writes and current.etag else None
        if merges and if_match is None:
            target, to_crm, conflicts = await self._merge_with_provider(config, provider, change, current, crm_event)
        provider_id = current.provider_id if current else None
        occurrence = mapping.crm_occurrence(change.fields) if current is None else None
        if occurrence is not None:  # an exception of a series: written over the series' occurrence
            provider_id = await self._occurrence_of(provider, maps, *occurrence)
            if provider_id is None:
                log.warning("crm exception not synced: its series or occurrence is not in the calendar",
                            record_id=change.record_id, series_id=occurrence[0])
                return SyncReport(skipped=1)
        notify = await self._notifies(config, made_by, current, crm_event)
        try:
            result = await provider.upsert(change.record_id, target, provider_id, notify=notify, if_match=if_match)
        except ChangedMeanwhile:
            target, to_crm, conflicts = await self._merge_with_provider(config, provider, change, current, crm_event)
            result = await provider.upsert(change.record_id, target, provider_id, notify=notify)
        await self._delete_excluded_occurrences(config, provider, current, target, result.provider_id)
        if to_crm:
            await self._update_crm(config, change.record_id, target, f"merge:{target.fingerprint()}",
                                   before=crm_event)
        await self._log_conflicts(config, change.record_id, conflicts)
        written = result.written or target
        await maps.save(EventMapping(change.record_id, result.provider_id, target,
                                     target.fingerprint() if to_crm else crm_event.fingerprint(),
                                     written.fingerprint(), result.etag,
                                     crm_modified_at=change.modified_at.isoformat(), provider_snapshot=written), current)
        return SyncReport(pushed=1, conflicts=len(conflicts))

    async def _merge_with_provider(self, config: IntegrationConfig, provider: CalendarProvider, change: CrmChange,
                                   current: EventMapping, crm_event: CanonicalEvent):
        """(what to write, whether the CRM must take it too, the clashes): the CRM's change merged three
        ways with what the provider holds now, when that differs from what we last wrote there."""
        remote = await provider.find_by_crm_id(change.record_id)
        if remote is None or remote.event is None or remote.event.fingerprint() == current.provider_fingerprint:
            return crm_event, False, ()
        merge = rules.merge_three_way(current.snapshot, crm_event, remote.event, change.modified_at,
                                      self._provider_time(remote), provider_holds=_holds(config),
                                      provider_base=current.provider_snapshot)
        return merge.merged, merge.to_crm, merge.conflicts

    # --- the provider's side ----------------------------------------------------------------------

    async def pull(self, config: IntegrationConfig, provider: CalendarProvider, own_address: str) -> SyncReport:
        """A push said something changed: pull the changes since the cursor (a full sync without one)."""
        state = ScopeState(self.redis, config.key)
        cursor = await state.cursor()
        if cursor is None:
            return await self.full_sync(config, provider, own_address, reason="no sync cursor")
        try:
            report, final = await self._pull_pages(config, provider, own_address, cursor)
        except CursorExpired:
            log.warning("sync cursor expired: full resync", scope=config.key)
            await state.set_cursor(None)
            return await self.full_sync(config, provider, own_address, reason="cursor expired")
        await state.set_cursor(final)
        return report

    async def _pull_pages(self, config, provider, own_address, cursor) -> tuple[SyncReport, str]:
        pulled = deleted = conflicts = 0
        page_token = None
        while True:
            page = await provider.list_changes(cursor, config.caps.initial_window_days,
                                               config.caps.incremental_page_cap, page_token)
            for remote in page.events:
                outcome = await self.apply_provider_event(config, provider, remote, own_address)
                pulled += outcome == "pulled"
                deleted += outcome == "deleted"
                conflicts += outcome == "conflict"
            if page.final_cursor is not None or page.next_cursor is None:
                return SyncReport(pulled=pulled, deleted=deleted, conflicts=conflicts), page.final_cursor or cursor
            page_token = page.next_cursor

    async def apply_provider_event(self, config: IntegrationConfig, provider: CalendarProvider,
                                   remote: ProviderEvent, own_address: str) -> str:
        maps = MappingStore(self.redis, config.key)
        current = await maps.by_provider_id(remote.provider_id)
        if current is None and remote.crm_record_id and not remote.series_id:  # an exception inherits the series' id
            current = await maps.by_crm_id(remote.crm_record_id)
        if remote.event is None or remote.event.cancelled:
            outcome = "skipped"
            if current is None and await self.pending.mark_gone(config.key, remote.provider_id):
                outcome = "deleted"  # its CRM record is being created: deleted as soon as its id is known
            if current is not None:
                if config.direction != Direction.CRM_TO_PROVIDER:
                    await self._send(config, DeleteRecord(module=CrmModule.EVENTS, record_id=current.crm_id),
                                     f"delete:{current.crm_id}")
                await maps.remove(current)
                outcome = "deleted"
            if remote.series_id and remote.original_start is not None:  # one occurrence of a series cancelled
                outcome = await self._exclude_occurrence(config, provider, remote, maps) or outcome
            log.info("provider event deleted", scope=config.key, provider_id=remote.provider_id, outcome=outcome,
                     crm_id=current.crm_id if current else None)
            return outcome
        if current is not None and rules.provider_change_is_echo(remote.event, current.provider_fingerprint):
            return "skipped"
        if config.direction == Direction.CRM_TO_PROVIDER:
            if current is None and remote.crm_record_id:  # ours, mapping lost: link it again
                await maps.save(EventMapping(remote.crm_record_id, remote.provider_id, remote.event, None,
                                             remote.event.fingerprint(), remote.etag,
                                             provider_snapshot=remote.event), None)
            return "skipped"
        if config.guests_as_contacts:
            await self._add_guests_as_contacts(config, remote.event.attendees, own_address)
        if current is None:
            return await self._link_or_create(config, remote, own_address, maps)
        return await self._merge_into_crm(config, provider, remote, current, maps)

    async def _merge_into_crm(self, config, provider, remote: ProviderEvent, current: EventMapping,
                              maps: MappingStore) -> str:
        indexed = await self.index.event(config.org_id, config.user_id, current.crm_id)
        target, to_provider, conflicts = remote.event, False, ()
        seen = current.crm_modified_at
        crm_event = current.snapshot  # what the CRM holds as far as we know: the fields to write are the others
        if indexed is not None and current.snapshot is not None and config.direction == Direction.TWO_WAY:
            crm_change = indexed.change
            seen = crm_change.modified_at.isoformat()  # this CRM version is merged here: its push is stale
            try:
                crm_event = mapping.crm_to_canonical(crm_change.fields).event
            except mapping.InvalidEvent:  # the CRM's copy is unusable: the snapshot stands for it
                crm_event = current.snapshot
            merge = rules.merge_three_way(current.snapshot, crm_event, remote.event, crm_change.modified_at,
                                          self._provider_time(remote), provider_holds=_holds(config),
                                          provider_base=current.provider_snapshot)
            target, to_provider, conflicts = merge.merged, merge.to_provider, merge.conflicts
        await self._update_crm(config, current.crm_id, target, f"pull:{remote.provider_id}:{target.fingerprint()}",
                               before=crm_event)
        held, etag = remote.event, remote.etag
        if to_provider:
            result = await provider.upsert(current.crm_id, target, remote.provider_id)
            held, etag = result.written or target, result.etag
        await self._log_conflicts(config, current.crm_id, conflicts)
        await maps.save(EventMapping(current.crm_id, remote.provider_id, target, target.fingerprint(),
                                     held.fingerprint(), etag, crm_modified_at=seen, provider_snapshot=held), current)
        return "conflict" if conflicts else "pulled"

    async def _exclude_occurrence(self, config, provider, remote: ProviderEvent, maps: MappingStore) -> str | None:
        """A cancelled occurrence of a synced series: the series, on both sides, excludes its date (EXDATE),
        so the CRM's series and the provider's master stay one event with one rule. None: not synced."""
        series = await maps.by_provider_id(remote.series_id)
        if series is None or series.snapshot is None or remote.original_start is None:
            return None
        target = with_exception_date(series.snapshot, remote.original_start)
        if target.recurrence == series.snapshot.recurrence:
            return None  # excluded already
        if config.direction != Direction.CRM_TO_PROVIDER:
            await self._update_crm(config, series.crm_id, target, f"exclude:{remote.provider_id}",
                                   before=series.snapshot)
        result = await provider.upsert(series.crm_id, target, series.provider_id)
        held = result.written or target
        await maps.save(EventMapping(series.crm_id, result.provider_id, target, target.fingerprint(),
                                     held.fingerprint(), result.etag, crm_modified_at=series.crm_modified_at,
                                     provider_snapshot=held), series)
        return "pulled"

    @staticmethod
    async def _occurrence_of(provider: CalendarProvider, maps: MappingStore, series_crm_id: str,
                             original_start: EventTime) -> str | None:
        series = await maps.by_crm_id(series_crm_id)
        return None if series is None else await provider.occurrence_id(series.provider_id, original_start)

    async def _delete_excluded_occurrences(self, config, provider: CalendarProvider, current: EventMapping | None,
                                           series: CanonicalEvent, series_provider_id: str) -> None:
        """Dates the CRM newly excluded from a series (EXDATE) that the provider cannot hold as a rule
        (Graph keeps exceptions as occurrences of their own): the occurrences are deleted one by one."""
        held = set(_holds(config)(series).recurrence)
        not_held = tuple(line for line in series.recurrence if line not in held)
        if not not_held:
            return
        known = current.snapshot.recurrence if current is not None and current.snapshot is not None else ()
        excluded_before = {t.instant() for t in exception_dates(known)}
        for original in exception_dates(not_held):
            if original.instant() in excluded_before:
                continue
            occurrence = await provider.occurrence_id(series_provider_id, original)
            if occurrence is not None:
                await provider.delete(occurrence)

    async def _link_or_create(self, config, remote: ProviderEvent, own_address: str, maps: MappingStore) -> str:
        """A provider event we have no mapping for: ours with a lost mapping, a shared meeting, or new."""
        event = remote.event
        ours = remote.crm_record_id if not remote.series_id else None  # an exception inherits the series' id
        if ours and await self.index.event(config.org_id, config.user_id, ours):
            await maps.save(EventMapping(ours, remote.provider_id, event, None, event.fingerprint(), remote.etag,
                                         provider_snapshot=event), None)
            return "linked"
        # An exception of a series shares the series' iCalUID: it is its own CRM event, tied to the series.
        meeting = None if remote.series_id else rules.meeting_key(event)
        owner = config.user_id
        external_ref = f"{config.integration.value}:{remote.provider_id}"
        fields = mapping.canonical_to_crm(event)
        if remote.series_id:
            fields |= await self._series_fields(maps, remote)
        if meeting:
            external_ref = f"meeting:{_digest(meeting)}"
            owner = await self.index.claim_meeting(config.org_id, meeting, config.user_id)
            if owner != config.user_id:  # someone else's copy of the meeting exists: join it
                fields = {"Participants": fields.get("Participants", [])}
                fields["Participants"] = _with_participant(fields["Participants"], own_address)
        correlation_id = CORRELATION_PREFIX + uuid.uuid4().hex
        await self.pending.put(correlation_id, PendingCreation(config.key, remote.provider_id, event,
                                                               event.fingerprint(), remote.etag))
        log.debug("crm creation asked", scope=config.key, provider_id=remote.provider_id)
        action = UpsertRecord(module=CrmModule.EVENTS, owner_id=owner, fields=fields, external_ref=external_ref)
        await self._send(config, action, f"create:{remote.provider_id}:{event.fingerprint()}", correlation_id)
        return "pulled"

    # --- whole-calendar work ----------------------------------------------------------------------

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
            for remote in page.events:
                if seen >= config.caps.initial_max_items:
                    break
                seen += 1
                pulled += await self.apply_provider_event(config, provider, remote, own_address) == "pulled"
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
            occurrence_id = await self._occurrence_of(provider, maps, series_id, original_start)
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

    # --- helpers ----------------------------------------------------------------------------------

    async def _update_crm(self, config, crm_id: str, event: CanonicalEvent, idempotency: str,
                          before: CanonicalEvent | None) -> None:
        """Write the event to the CRM record: only the fields that differ from `before`, what the CRM held
        as far as we know, so a CRM edit not indexed yet (its change still on its way) is not overwritten."""
        indexed = await self.index.event(config.org_id, config.user_id, crm_id)
        current_fields = indexed.change.fields if indexed else None  # keeps what the canonical form does not hold
        fields = mapping.changed_crm_fields(before, event, current_fields)
        if not fields:
            return
        action = UpsertRecord(module=CrmModule.EVENTS, record_id=crm_id, owner_id=config.user_id, fields=fields)
        await self._send(config, action, f"update:{crm_id}:{idempotency}")

    @staticmethod
    async def _series_fields(maps: MappingStore, remote: ProviderEvent) -> dict:
        """How the CRM ties an exception to its series: the series' record and the occurrence's original start."""
        series = await maps.by_provider_id(remote.series_id)
        original = remote.original_start.rfc3339() if remote.original_start is not None else None
        return {"Series_Id": series.crm_id if series else None, "Original_Start": original}

    @staticmethod
    def _provider_time(remote: ProviderEvent) -> dt.datetime:
        moment = rules.modified_time(remote.updated_at)
        if remote.updated_at and moment == rules.modified_time(None):
            log.warning("provider modification time malformed: taken as the epoch, the CRM wins a clash",
                        provider_id=remote.provider_id, updated=remote.updated_at)
        return moment

    async def _notifies(self, config, change: CrmChange, current: EventMapping | None, event: CanonicalEvent) -> bool:
        """Whether this write may mail the attendees: only when a CRM user changed the participant list
        (a new event's participants included) and the org lets such changes notify."""
        if change.source not in PERSON_SOURCES or not event.attendees:
            return False
        previous = current.snapshot if current is not None else None
        if previous is None and change.op == CrmOp.CREATED:
            previous = event.model_copy(update={"attendees": ()})  # created with them: the user chose them
        setting = "all" if await OrgCalendarSettings(self.redis).notifies_participants(config.org_id) else "none"
        return rules.send_updates(previous, event, changed_by_user=True, org_setting=setting) != "none"

    async def _send(self, config, action, idempotency: str, correlation_id: str | None = None) -> None:
        await self._command(config.org_id, config.key, action, idempotency, correlation_id)

    async def _command(self, org_id: str, scope: str, action, idempotency: str, correlation_id: str | None = None):
        command = CrmCommand(
            org_id=org_id,
            idempotency_key=f"{scope}:{idempotency}"[:512],
            correlation_id=correlation_id or CORRELATION_PREFIX + uuid.uuid4().hex,
            issued_by=scope.rsplit(":", 1)[-1],
            issued_at=self.now(),
            action=action,
        )
        await self.publish_command(command)

    async def _log_conflicts(self, config, crm_id: str, conflicts) -> None:
        if not conflicts:
            return
        entries = [{"crm_id": crm_id, "field": c.field, "crm_value": c.crm_value, "provider_value": c.provider_value,
                    "winner": c.winner, "at": self.now().isoformat()} for c in conflicts]
        for entry in entries:
            log.warning("two-way conflict", **entry)
        await ScopeState(self.redis, config.key).log_conflicts(entries)

    async def _add_guests_as_contacts(self, config, attendees: tuple[Attendee, ...], own_address: str) -> None:
        addresses = [a.email for a in attendees]
        known = await self.index.known_contacts(config.org_id, addresses)
        for guest in rules.guests_to_add_as_contacts(attendees, known, {own_address.lower()}):
            if not await self.index.claim_new_contact(config.org_id, guest.email):
                continue  # another user's sync created it first
            name = guest.name or guest.email.split("@")[0]
            action = UpsertRecord(module=CrmModule.CONTACTS, owner_id=config.user_id,
                                  fields={"Email": guest.email, "Last_Name": name, "Lead_Source": "Calendar guest"},
                                  external_ref=f"guest:{guest.email}")
            await self._send(config, action, f"guest:{guest.email}")


def _holds(config: IntegrationConfig) -> Callable[[CanonicalEvent], CanonicalEvent]:
    """The event as a sync's write leaves it at the provider: what it cut (a long description) is no edit
    of the user's. Outlook takes no attendees from a sync's own writes (writing them invites): compared
    as absent there, an Outlook copy without the CRM's participants neither clears them nor asks a write."""
    if config.integration == Integration.GOOGLE_CALENDAR:
        return lambda event: mapping.fit_google(event).event
    return lambda event: mapping.fit_graph(event).event.model_copy(update={"attendees": ()})


def _with_participant(participants: list[dict], address: str) -> list[dict]:
    if any(str(p.get("Email", "")).lower() == address.lower() for p in participants):
        return participants
    return [*participants, {"type": "user", "Email": address.lower(), "name": "", "status": "accepted"}]
