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
from collections.abc import Callable
from dataclasses import dataclass

from schemas import (
    ChangeSource,
    CrmChange,
    CrmModule,
    CrmOp,
    DeleteRecord,
    Direction,
    Integration,
    IntegrationConfig,
)
from services.calendar_sync import mapping, rules, rules_series
from services.calendar_sync.crm_writes import (
    CommandPublisher,
    CrmWrites,
    creation_meeting,
    crm_creation,
    is_our_correlation,
)
from services.calendar_sync.model import (
    CanonicalEvent,
    EventTime,
    exception_dates,
    with_exception_date,
)
from services.calendar_sync.ports import CalendarProvider, ChangedMeanwhile, CursorExpired, ProviderEvent
from services.calendar_sync.series_backlog import SeriesBacklog
from services.calendar_sync.store import (
    CrmIndex,
    EventMapping,
    MappingStore,
    OrgCalendarSettings,
    PendingCreations,
    ScopeState,
    VersionConflict,
)
from services.calendar_sync.sync_report import SyncReport
from services.calendar_sync.whole_calendar import WholeCalendar
from services.common.logging import get_logger

log = get_logger(__name__)

@dataclass(frozen=True)
class CrmObservation:
    """What indexing a CRM change found: our own echo (not synced again), and whose calendars it concerns:
    its owner's, and the one it moved away from."""

    echo: bool
    owners: tuple[str, ...] = ()


PERSON_SOURCES = frozenset({ChangeSource.UI, ChangeSource.API, ChangeSource.BULK_UPDATE})
"""Changes a CRM user made: only these may notify attendees (per the org's setting), never a sync's own writes."""


class CalendarEngine:
    def __init__(self, redis, publish_command: CommandPublisher, now: Callable[[], dt.datetime] | None = None):
        self.redis = redis
        self.publish_command = publish_command
        self.index = CrmIndex(redis)
        self.pending = PendingCreations(redis)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.crm = CrmWrites(redis, publish_command, self.index, self.now)
        self.whole = WholeCalendar(self)
        self.backlog = SeriesBacklog(self)

    # --- the CRM's side ---------------------------------------------------------------------------

    async def observe_crm_change(self, change: CrmChange) -> CrmObservation:
        """Index a CRM change; say whether it is ours coming back (an echo) and whose calendars it concerns."""
        if change.module == CrmModule.CONTACTS:
            await self.index.record_contact(change)
        if change.module != CrmModule.EVENTS:
            return CrmObservation(echo=False)
        ours = is_our_correlation(change.correlation_id)
        if ours:  # indexed, and the creation it answers (if any) taken
            moved_from, taken = await self.index.record_echo(change, self.pending)
        else:
            moved_from, taken = await self.index.record_event(change), None
        owners = (change.owner_id, moved_from) if moved_from else (change.owner_id,)
        if not ours:
            return CrmObservation(echo=False, owners=owners)
        if taken is not None and taken[1]:  # deleted at the provider before its CRM record existed
            await self.crm.command(change.org_id, taken[0].scope, DeleteRecord(module=CrmModule.EVENTS,
                                                                            record_id=change.record_id),
                                f"delete:{change.record_id}")
            await self.backlog.drop(taken[0])  # its kept occurrences go with it
        elif taken is not None:  # the CRM created the event we asked for: now both ids are known
            pending = taken[0]
            log.debug("crm creation linked", scope=pending.scope, provider_id=pending.provider_id,
                     record_id=change.record_id)
            maps = MappingStore(self.redis, pending.scope)
            crm_event = mapping.crm_to_canonical(change.fields).event
            link = EventMapping(change.record_id, pending.provider_id, pending.snapshot,
                                crm_event.fingerprint() if crm_event else None, pending.provider_fingerprint,
                                pending.etag, crm_modified_at=change.modified_at.isoformat(),
                                provider_snapshot=pending.snapshot)
            try:  # a record the CRM has just created has no mapping: saved as new, without reading first
                linked = await maps.save(link, None if change.op == CrmOp.CREATED else
                                         await maps.by_crm_id(change.record_id))
            except VersionConflict:
                if change.op != CrmOp.CREATED:
                    raise
                linked = await maps.save(link, await maps.by_crm_id(change.record_id))  # one there after all
            await self.backlog.replay(pending, linked)  # its occurrences that came before its id
        return CrmObservation(echo=True, owners=owners)

    async def push_crm_change(self, config: IntegrationConfig, change: CrmChange,
                              provider: CalendarProvider) -> SyncReport:
        """A CRM event changed: write it to the provider at once (merging with the provider's edits).

        An event moved to another owner leaves this calendar (its new owner's sync creates it there).
        """
        maps = MappingStore(self.redis, config.key)
        current, indexed = await maps.by_crm_id_with_indexed(self.index, config.org_id, change.owner_id,
                                                             change.record_id)
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
            provider_id = await self.occurrence_of(provider, maps, *occurrence)
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
            await self.crm.update_event(config, change.record_id, target, f"merge:{target.fingerprint()}",
                                        before=crm_event)
        await self.crm.log_conflicts(config, change.record_id, conflicts)
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

    async def is_own_echo(self, config: IntegrationConfig, item_id: str | None, item_etag: str | None) -> bool:
        """Whether a notification names an event at the version we last synced (our own write coming back,
        or a change pulled already): its etag is the one on the event's mapping. Graph names the item;
        Google does not (never an echo here)."""
        if not item_id or not item_etag:
            return False
        current = await MappingStore(self.redis, config.key).by_provider_id(item_id)
        return current is not None and current.etag == item_etag

    async def pull(self, config: IntegrationConfig, provider: CalendarProvider, own_address: str) -> SyncReport:
        """A push said something changed: pull the changes since the cursor (a full sync without one)."""
        state = ScopeState(self.redis, config.key)
        cursor = await state.cursor()
        if cursor is None:
            return await self.whole.full_sync(config, provider, own_address, reason="no sync cursor")
        try:
            report, final = await self._pull_pages(config, provider, own_address, cursor)
        except CursorExpired:
            log.warning("sync cursor expired: full resync", scope=config.key)
            await state.set_cursor(None)
            return await self.whole.full_sync(config, provider, own_address, reason="cursor expired")
        await state.set_cursor(final)
        return report

    async def _pull_pages(self, config, provider, own_address, cursor) -> tuple[SyncReport, str]:
        pulled = deleted = conflicts = 0
        page_token = None
        while True:
            page = await provider.list_changes(cursor, config.caps.initial_window_days,
                                               config.caps.incremental_page_cap, page_token)
            for remote in rules_series.masters_first(page.events):
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
                    await self.crm.send(config, DeleteRecord(module=CrmModule.EVENTS, record_id=current.crm_id),
                                     f"delete:{current.crm_id}")
                await maps.remove(current)
                outcome = "deleted"
            if remote.series_id and remote.original_start is not None:  # one occurrence of a series cancelled
                outcome = await self._exclude_occurrence(config, provider, remote, maps,
                                                         find_exception=current is None) or outcome
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
            await self.crm.add_guests_as_contacts(config, remote.event.attendees, own_address)
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
        await self.crm.update_event(config, current.crm_id, target, f"pull:{remote.provider_id}:{target.fingerprint()}",
                               before=crm_event)
        held, etag = remote.event, remote.etag
        if to_provider:
            result = await provider.upsert(current.crm_id, target, remote.provider_id)
            held, etag = result.written or target, result.etag
        await self.crm.log_conflicts(config, current.crm_id, conflicts)
        await maps.save(EventMapping(current.crm_id, remote.provider_id, target, target.fingerprint(),
                                     held.fingerprint(), etag, crm_modified_at=seen, provider_snapshot=held), current)
        return "conflict" if conflicts else "pulled"

    async def _exclude_occurrence(self, config, provider, remote: ProviderEvent, maps: MappingStore,
                                  find_exception: bool = False) -> str | None:
        """A cancelled occurrence of a synced series: the series, on both sides, excludes its date (EXDATE),
        so the CRM's series and the provider's master stay one event with one rule. None: not synced.
        `find_exception`: the cancelled occurrence came without an id we know (Graph names no cancelled
        instance), so a CRM exception at that date is looked for, and goes with it."""
        series = await maps.by_provider_id(remote.series_id)
        if series is None and await self.backlog.keep(config, remote):
            return "deferred"  # the series' CRM record is being created: excluded once it is linked
        if series is None or series.snapshot is None or remote.original_start is None:
            return None
        target = with_exception_date(series.snapshot, remote.original_start)
        if target.recurrence == series.snapshot.recurrence:
            return None  # excluded already
        if find_exception:
            await self._remove_exception_at(config, maps, series.crm_id, remote.original_start)
        if config.direction != Direction.CRM_TO_PROVIDER:
            await self.crm.update_event(config, series.crm_id, target, f"exclude:{remote.provider_id}",
                                   before=series.snapshot)
        holds = _holds(config)
        if holds(target) == holds(series.snapshot):
            # The provider cannot hold the exclusion (Graph: no EXDATE) and holds the cancellation already:
            # writing the master again would change nothing there, or, if Outlook reset a series' exceptions
            # on a PATCH carrying its pattern (undocumented), lose them.
            await maps.save(dataclasses.replace(series, snapshot=target, crm_fingerprint=target.fingerprint()), series)
            return "pulled"
        result = await provider.upsert(series.crm_id, target, series.provider_id)
        held = result.written or target
        await maps.save(EventMapping(series.crm_id, result.provider_id, target, target.fingerprint(),
                                     held.fingerprint(), result.etag, crm_modified_at=series.crm_modified_at,
                                     provider_snapshot=held), series)
        return "pulled"

    async def _remove_exception_at(self, config, maps: MappingStore, series_crm_id: str,
                                   original_start: EventTime) -> None:
        """The synced CRM exception of the series at that original start, if any, is deleted: its occurrence
        is cancelled. Looked up among the user's indexed CRM events, once per newly excluded date."""
        for record_id, indexed in (await self.index.events_of(config.org_id, config.user_id)).items():
            try:
                occurrence = mapping.crm_occurrence(indexed.change.fields)
            except mapping.InvalidEvent:
                continue
            if occurrence is None or occurrence[0] != series_crm_id \
                    or occurrence[1].instant() != original_start.instant():
                continue
            current = await maps.by_crm_id(record_id)
            if current is None:
                continue
            if config.direction != Direction.CRM_TO_PROVIDER:
                await self.crm.send(config, DeleteRecord(module=CrmModule.EVENTS, record_id=record_id),
                                    f"delete:{record_id}")
            await maps.remove(current)

    @staticmethod
    async def occurrence_of(provider: CalendarProvider, maps: MappingStore, series_crm_id: str,
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
        meeting = creation_meeting(remote)
        series = await self._series_fields(maps, remote) if remote.series_id else {}
        if remote.series_id and series["Series_Id"] is None and await self.backlog.keep(config, remote):
            return "deferred"  # the series' CRM record is being created: created once it is linked
        owner = await self.index.claim_meeting(config.org_id, meeting, config.user_id) if meeting else config.user_id
        creation = crm_creation(config, remote, own_address, owner, series)
        await self.pending.put(creation.correlation_id, creation.pending)
        log.debug("crm creation asked", scope=config.key, provider_id=remote.provider_id)
        await self.crm.send(config, creation.action, creation.idempotency, creation.correlation_id)
        return "pulled"

    async def create_exception(self, config, remote: ProviderEvent, maps: MappingStore) -> str:
        """An exception of a series now linked, kept while the series' CRM record was being created."""
        return await self._link_or_create(config, remote, "", maps)  # no address: an exception is no meeting

    # --- helpers ----------------------------------------------------------------------------------

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


def _holds(config: IntegrationConfig) -> Callable[[CanonicalEvent], CanonicalEvent]:
    """The event as a sync's write leaves it at the provider: what it cut (a long description) is no edit
    of the user's. Outlook takes no attendees from a sync's own writes (writing them invites): compared
    as absent there, an Outlook copy without the CRM's participants neither clears them nor asks a write."""
    if config.integration == Integration.GOOGLE_CALENDAR:
        return lambda event: mapping.fit_google(event).event
    return lambda event: mapping.fit_graph(event).event.model_copy(update={"attendees": ()})
