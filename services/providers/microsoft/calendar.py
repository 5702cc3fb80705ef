"""One user's own Outlook calendar through Microsoft Graph: the CalendarProvider for Microsoft 365.

"My Events" is the user's own events: those in the synced calendar (the default one, `/users/{id}/events`
and `/calendarView`, or the configured target, `/users/{id}/calendars/{target}/...`) that the user organises (`isOrganizer`; an event with no attendees is
organised by its owner). Invitations from other people that Outlook puts in the same calendar are left
out of the changes: they belong to their organiser, whose own sync brings the meeting into the CRM.
Events this adapter writes are created in that calendar, so the user organises them.

Reading changes. Graph tracks event changes only on a calendar view, a window fixed when the round
starts (PROVIDERS.md): the first round asks `calendarView/delta` for [now - window_days, now + horizon]
(`graph_calendar_horizon_days`) in pages of `Prefer: odata.maxpagesize`, and its deltaLink is the
cursor of later rounds. Delta answers no `$expand`, so it cannot say which CRM record an event is; the
changed events are therefore read again, 20 to a `$batch`, with our extended properties expanded.
That costs one batch call per 20 changes, and buys what the mapping store alone cannot: an event we
wrote whose mapping was lost (a worker killed between the write and the mapping, a configuration
deleted and enabled again) comes back with its CRM record id and is linked, not created twice. The
second read also turns a series' occurrences into the series itself (one CRM event with its rule) and
tells an event moved out of the window (`@removed` reason "changed": still there, reported as
changed) from one deleted (reported deleted).

Writing. A create carries `transactionId` (from org, user and record) and our extended properties; a
write for a record with no known event first looks for the event by its record id, so a lost mapping
never makes a second event. Writes in bulk go 20 to a `$batch`.

Invitations. Graph has no `sendUpdates=none`: creating or updating an event with attendees sends
invitations or updates from the organiser's mailbox ("when one creates an event using a POST /events
operation, the event gets sent", microsoftgraph/microsoft-graph-docs pull 7246; no flag suppresses it,
Microsoft Q&A 5636814; `isDraft` is read-only in v1.0). So attendees are written only by a write the
engine marks `notify` (a participant list a CRM user changed, in an org whose setting lets such changes
notify); any other write leaves them out: the participants stay in the CRM, are reported in
`WriteResult.unmapped`, and an update leaves whatever attendees the Outlook event has untouched (PATCH
writes only what it carries).
Deleting a meeting that has attendees does send them a cancellation (Graph: event delete): that is
the meeting ending, not spam, and happens only for events that had attendees in Outlook.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from services.calendar_sync import mapping, rules
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import (
    ChangedMeanwhile,
    ChangePage,
    Channel,
    CursorExpired,
    ProviderEvent,
    WriteResult,
)
from services.common.logging import get_logger
from services.common.settings import Settings
from services.common.tasks import cancel_unfinished
from services.providers.microsoft import calendar_ids as ids
from services.providers.microsoft.calendar_records import UNKNOWN, KnownRecords
from services.providers.microsoft.calendar_series import cancelled_in
from services.providers.microsoft.calendar_series import graph_time as _graph_time
from services.providers.microsoft.graph import (
    BATCH_MAX,
    BatchRequest,
    GraphClient,
    GraphError,
    GraphResponse,
    error_of,
    with_query,
)
from services.providers.microsoft.subscriptions import Subscriptions

log = get_logger(__name__)

# Graph's codes for a delta token it no longer knows (410 with a Location, or a 40x for Outlook).
_SYNC_STATE_LOST = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_LIST_PAGE = 1000  # $top for our own events: the most one events page holds
_ZONE_KEPT_S = 3600.0  # a mailbox's time zone is read again after this: users move and change it
# mailbox -> (its time zone, when read): all-day events are written midnight to midnight there.
_mailbox_zones: dict[str, tuple[str, float]] = {}
_Item = tuple[str, CanonicalEvent, str | None]


@dataclass
class _Found:
    """Events read while resolving a delta page: id -> the event (None: gone), and its CRM record id."""

    events: dict[str, dict | None] = field(default_factory=dict)
    records: dict[str, str | None] = field(default_factory=dict)

    def add(self, event_id: str, raw: dict | None, crm_record_id: str | None) -> None:
        self.events[event_id] = raw
        self.records[event_id] = crm_record_id


class GraphCalendarProvider:
    """One calendar of one mailbox (`calendar_id`, the default calendar when None), synced for one CRM
    user (org_id, user_id)."""

    # PATCH honours If-Match on the event's etag (its changeKey): a stale one answers 412
    # ErrorIrresolvableConflict (mguessan/davmail issue 491; analogdotnow/Analog pull request 475).
    conditional_writes = True

    def __init__(self, client: GraphClient, settings: Settings, *, mailbox: str, org_id: str, user_id: str,
                 calendar_id: str | None = None, known: KnownRecords | None = None):
        self.client = client
        self.known = known if known is not None else KnownRecords()  # the process's, from GraphConnections
        self.mailbox = mailbox
        self.org_id = org_id
        self.user_id = user_id
        self.horizon = dt.timedelta(days=settings.graph_calendar_horizon_days)
        self.subscriptions = Subscriptions(client, settings.graph_subscription_max_minutes)
        self._user = f"/users/{quote(mailbox, safe='@')}"
        # Where events are listed, created and tracked: a chosen calendar, or the default one, which
        # is what /users/{id}/events and /calendarView stand for (https://learn.microsoft.com/graph/api/user-post-events).
        self._calendar = f"{self._user}/calendars/{quote(calendar_id, safe='')}" if calendar_id else self._user
        self._owner = ids.owner_value(org_id, user_id)
        # The listing of our events (event id -> CRM record id), once asked for (see `_listed_ours`).
        self._listing: asyncio.Future[dict[str, str]] | None = None

    # --- calendars --------------------------------------------------------------------------------
    async def writable_calendars(self) -> list[str]:
        """Ids of the mailbox's calendars the user can edit (the default one is where events are written)."""
        found = []
        async for page in self.client.pages(f"{self._user}/calendars", {"$select": "id,name,canEdit"}):
            found.extend(c["id"] for c in page if c.get("canEdit"))
        return found

    # --- changes ----------------------------------------------------------------------------------
    async def list_changes(self, cursor: str | None, window_days: int, page_cap: int,
                           page_token: str | None = None) -> ChangePage:
        """Up to about `page_cap` changes: whole Graph pages are taken until the cap is reached."""
        params = None
        url = page_token or cursor
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        window = (now - dt.timedelta(days=window_days), now + self.horizon)
        if url is None:
            url = f"{self._calendar}/calendarView/delta"
            params = {"startDateTime": _graph_time(window[0]), "endDateTime": _graph_time(window[1])}
        headers = {"Prefer": f"odata.maxpagesize={max(1, min(page_cap, _LIST_PAGE))}"}
        items: list[dict] = []
        while True:
            body = (await self._delta_page(url, params, headers)).body
            items.extend(body.get("value", []))
            if "@odata.deltaLink" in body:
                next_cursor, final_cursor = None, body["@odata.deltaLink"]
                break
            url, params = body["@odata.nextLink"], None
            if len(items) >= page_cap:
                next_cursor, final_cursor = url, None
                break
        return ChangePage(await self._resolve(items, window, incremental=cursor is not None), next_cursor,
                          final_cursor)

    async def _delta_page(self, url: str, params: dict | None, headers: dict) -> GraphResponse:
        try:
            return await self.client.request("GET", url, params=params, headers=headers)
        except GraphError as exc:
            if exc.status == 410 or exc.code.lower() in _SYNC_STATE_LOST:
                raise CursorExpired(f"Graph delta token no longer valid: {exc}") from exc
            raise

    async def _resolve(self, items: list[dict], window: tuple[dt.datetime, dt.datetime],
                       incremental: bool) -> list[ProviderEvent]:
        """Delta items as provider events, in delta order: deletions as such; series occurrences as their
        series (read), followed by the occurrences cancelled in it (calendar_series); events that left the
        window read again (moved, or gone); invitations from others
        left out. Which CRM record an event is comes from our extended property, which delta cannot
        expand: a few events are read again, 20 to a batch; for more, one listing of our own events
        (a call per 1,000) is cheaper than a read per event. In incremental rounds a single event whose
        record this process knows already (calendar_records: our own write's echo, an edit of an event
        seen before) is taken as delta reported it, unread."""
        deleted: set[str] = set()
        singles: dict[str, dict] = {}
        to_read: list[str] = []
        for item in items:
            removed = item.get("@removed", {}).get("reason")
            if removed == "deleted":
                deleted.add(item["id"])
            elif item.get("type") == "exception":  # an occurrence edited on its own: an event of its own
                to_read.append(item["id"])
            elif removed or item.get("seriesMasterId"):
                to_read.append(item.get("seriesMasterId") or item["id"])
            else:
                singles[item["id"]] = item
        found = _Found()
        for event_id in list(singles) if incremental else ():
            known = self.known.get(self._owner, event_id)
            if known is not UNKNOWN:
                found.add(event_id, singles.pop(event_id), known)
        if len(singles) > BATCH_MAX:
            record_of = await self._listed_ours()
            for event_id, raw in singles.items():
                found.add(event_id, raw, record_of.get(event_id))
        else:
            to_read.extend(singles)
        await self._read(found, to_read)
        series = [raw["seriesMasterId"] for raw in found.events.values() if raw and raw.get("seriesMasterId")]
        await self._read(found, series)
        for event_id, raw in found.events.items():
            if raw is None:
                self.known.forget(self._owner, event_id)
            else:
                self.known.learn(self._owner, event_id, found.records.get(event_id))
        for event_id in deleted:
            self.known.forget(self._owner, event_id)

        events: dict[str, ProviderEvent] = {}
        for item in items:
            own = item["id"] in deleted or item.get("type") == "exception"
            event_id = item["id"] if own else item.get("seriesMasterId") or item["id"]
            raw = found.events.get(event_id)
            if raw is not None and raw.get("seriesMasterId") and raw.get("type") != "exception":
                raw = found.events.get(raw["seriesMasterId"])
            if raw is None:
                events.setdefault(event_id, ProviderEvent(event_id, None))
            elif raw.get("isOrganizer", True):
                mapped = self._provider_event(raw, found.records.get(raw["id"]))
                if mapped is not None:
                    events[raw["id"]] = mapped
        masters = [found.events[i] for i in events if (found.events.get(i) or {}).get("type") == "seriesMaster"]
        cancelled = await cancelled_in(self.client, self._event_path, masters, window) if masters else {}
        return [e for event_id, event in events.items() for e in (event, *cancelled.get(event_id, ()))]

    async def _read(self, found: _Found, event_ids: list[str]) -> None:
        """Read these events (those not read yet) with our properties, 20 to a batch; 404: gone (None)."""
        wanted = [i for i in dict.fromkeys(event_ids) if i not in found.events]
        query = {"$expand": ids.EXPAND_OURS}
        requests = [BatchRequest("GET", with_query(self._event_path(i), query)) for i in wanted]
        for event_id, answer in zip(wanted, await self.client.batch(requests)):
            if answer.status == 404:
                found.add(event_id, None, None)
            elif not answer.ok:
                raise error_of(answer, f"GET event {event_id}")
            else:
                found.add(event_id, answer.body, self._record_of(answer.body))

    def _record_of(self, raw: dict) -> str | None:
        """The CRM record id on an event read with EXPAND_OURS, if this user's sync wrote it."""
        ours = ids.properties_of(raw)
        return ours.get(ids.RECORD_PROPERTY) if ours.get(ids.OWNER_PROPERTY) == self._owner else None

    def _provider_event(self, raw: dict, crm_record_id: str | None) -> ProviderEvent | None:
        """The event as the engine takes it; None (logged with the reason) for one that cannot be mapped,
        which is skipped rather than stopping the user's sync or passing for a deletion."""
        try:
            mapped = mapping.graph_to_canonical(raw)
            original_start = mapping.graph_original_start(raw)
        except mapping.InvalidEvent as exc:
            log.warning("outlook event not mappable: skipped", mailbox=self.mailbox, event_id=raw.get("id"),
                        reason=str(exc))
            return None
        if mapped.problems:  # recovered (clamped, kept in UTC...), but the user's data was wrong: say so
            log.warning("outlook event mapped with problems", mailbox=self.mailbox, event_id=raw.get("id"),
                        problems=list(mapped.problems))
        return ProviderEvent(
            provider_id=raw["id"],
            event=mapped.event,
            crm_record_id=crm_record_id,
            etag=raw.get("@odata.etag"),
            updated_at=raw.get("lastModifiedDateTime"),
            raw_problems=tuple(mapped.problems) + tuple(mapped.unmapped),
            series_id=raw.get("seriesMasterId") if original_start is not None else None,
            original_start=original_start,
        )

    async def occurrence_id(self, series_id: str, original_start: EventTime) -> str | None:
        """The series' instances around that start (https://learn.microsoft.com/graph/api/event-list-instances),
        matched on `originalStart`, which occurrences and exceptions carry; a cancelled occurrence is not
        listed (None)."""
        moment = original_start.instant()
        params = {"startDateTime": _graph_time(moment - dt.timedelta(days=1)),
                  "endDateTime": _graph_time(moment + dt.timedelta(days=2))}
        try:
            answer = await self.client.request("GET", f"{self._event_path(series_id)}/instances", params=params)
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise
        for raw in answer.body.get("value", []):
            original = rules.modified_time(raw.get("originalStart"))  # an instant, as the modification times
            if original == moment:
                return raw["id"]
        return None

    # --- our events by CRM record -----------------------------------------------------------------
    async def find_by_crm_id(self, crm_record_id: str) -> ProviderEvent | None:
        params = {"$filter": ids.has_property(ids.RECORD_PROPERTY, crm_record_id), "$expand": ids.EXPAND_OURS}
        async for page in self.client.pages(f"{self._calendar}/events", params):
            for raw in page:
                if self._record_of(raw) == crm_record_id:
                    self.known.learn(self._owner, raw["id"], crm_record_id)
                    # Unmappable as it stands in Outlook, it is still the event to write over.
                    unmappable = ProviderEvent(raw["id"], None, crm_record_id)
                    return self._provider_event(raw, crm_record_id) or unmappable
        return None

    async def _our_events(self) -> dict[str, str]:
        """provider id -> CRM record id of every event we wrote for this user, $top pages at a time."""
        params = {"$filter": ids.has_property(ids.OWNER_PROPERTY, self._owner), "$select": "id",
                  "$expand": ids.EXPAND_OURS, "$top": str(_LIST_PAGE)}
        found: dict[str, str] = {}
        async for page in self.client.pages(f"{self._calendar}/events", params):
            found.update((raw["id"], ids.properties_of(raw).get(ids.RECORD_PROPERTY, "")) for raw in page)
        return found

    async def _listed_ours(self) -> dict[str, str]:
        """`_our_events`, listed once per provider (one message's work) and kept current by its own writes
        and deletes: a first sync reads delta pages and writes chunks, and a listing for each would read
        again every event of ours (5,000 events written in chunks: 10,000 read back)."""
        if self._listing is None:  # one listing, however many chunks ask for it at once
            self._listing = asyncio.ensure_future(self._our_events())
        try:
            return await asyncio.shield(self._listing)
        except Exception:
            self._listing = None  # the next ask lists again; this one fails as the listing did
            raise

    def _listed(self) -> dict[str, str] | None:
        """The listing, when one was made (a write or delete keeps it current), else None."""
        listing = self._listing
        if listing is None or not listing.done() or listing.cancelled() or listing.exception() is not None:
            return None
        return listing.result()

    async def _locate(self, crm_ids: list[str]) -> dict[str, str]:
        """CRM record id -> provider id of our events for these records: one filtered read for a single
        record, else the listing of all our events (one call per 1,000) instead of a read per record."""
        if self._listing is None and len(crm_ids) == 1:
            found = await self.find_by_crm_id(crm_ids[0])
            return {crm_ids[0]: found.provider_id} if found else {}
        wanted = set(crm_ids)
        return {crm: pid for pid, crm in (await self._listed_ours()).items() if crm in wanted}

    # --- writes -----------------------------------------------------------------------------------
    async def upsert(self, crm_record_id: str, event: CanonicalEvent, provider_id: str | None, *,
                     notify: bool = False, if_match: str | None = None) -> WriteResult:
        """`if_match`: the PATCH applies only while Outlook holds that version; else ChangedMeanwhile."""
        result = (await self._upsert([(crm_record_id, event, provider_id)], notify,
                                     if_match if provider_id else None))[0]
        if isinstance(result, GraphError) and result.status == 412:
            raise ChangedMeanwhile(f"event {provider_id} changed in Outlook since etag {if_match}") from result
        if isinstance(result, Exception):
            raise result
        return result

    async def upsert_many(self, items: list[_Item]) -> list[WriteResult | Exception]:
        return await self._upsert(items, notify=False)

    async def _upsert(self, items: list[_Item], notify: bool, if_match: str | None = None) -> list[WriteResult | Exception]:
        """The writes go BATCH_MAX to a `$batch`, one batch in flight at a time (the client's turn: a
        batch already takes Graph's 4 concurrent calls per mailbox), while the next batch is mapped and
        the previous one's answers read: mapping and reading overlap Graph's work instead of waiting
        on it. A failed batch call stops the others."""
        missing = [crm for crm, _, pid in items if pid is None]
        located = await self._locate(missing) if missing else {}
        targets = [pid or located.get(crm) for crm, _, pid in items]
        zone = await self.all_day_zone() if any(event.start.all_day for _, event, _ in items) else "UTC"
        groups = [asyncio.ensure_future(self._upsert_group(items[i:i + BATCH_MAX], targets[i:i + BATCH_MAX],
                                                           notify, zone, if_match))
                  for i in range(0, len(items), BATCH_MAX)]
        try:
            return [result for group in await asyncio.gather(*groups) for result in group]
        finally:
            await cancel_unfinished(groups)

    async def _upsert_group(self, items: list[_Item], targets: list[str | None], notify: bool, zone: str,
                            if_match: str | None) -> list[WriteResult | Exception]:
        """One batch of writes, each to its target event (None: created)."""
        writes = [self._write(crm, event, pid, notify, zone, if_match=if_match)
                  for (crm, event, _), pid in zip(items, targets)]
        answers = await self.client.batch(writes)
        # An update of an event the user deleted in Outlook: the CRM still has the event, so create it again.
        gone = [n for n, answer in enumerate(answers) if targets[n] and answer.status == 404]
        if gone:
            again = [self._write(items[n][0], items[n][1], None, notify, zone, replacing=targets[n]) for n in gone]
            for n, answer in zip(gone, await self.client.batch(again)):
                answers[n] = answer
        return [self._result(item, answer, notify) for item, answer in zip(items, answers)]

    def _write(self, crm_record_id: str, event: CanonicalEvent, provider_id: str | None, notify: bool,
               all_day_zone: str, replacing: str | None = None, if_match: str | None = None) -> BatchRequest:
        body = mapping.canonical_to_graph(event, all_day_zone=all_day_zone)
        if not notify:  # attendees written are invited: Graph has no way to write them quietly
            body.pop("attendees", None)
        body["singleValueExtendedProperties"] = ids.stamp(self.org_id, self.user_id, crm_record_id)
        if provider_id:
            return BatchRequest("PATCH", self._event_path(provider_id), body,
                                {"If-Match": if_match} if if_match else None)
        body["transactionId"] = ids.transaction_id(self.org_id, self.user_id, crm_record_id, replacing)
        return BatchRequest("POST", f"{self._calendar}/events", body)

    def _result(self, item: _Item, answer: GraphResponse, notify: bool) -> WriteResult | Exception:
        crm_record_id, event, _ = item
        if not answer.ok:
            return error_of(answer, f"write of CRM event {crm_record_id}")
        unmapped = list(mapping.fit_graph(event).unmapped)  # what Graph cannot hold (a second reminder...)
        if event.attendees and not notify:
            unmapped.append(f"attendees: {len(event.attendees)} participants kept in the CRM only: writing "
                            "them to Outlook would send invitations")
        if unmapped:  # what Outlook does not hold of the CRM's event: the user is told, not left to find out
            log.info("crm event written to outlook without some fields", mailbox=self.mailbox,
                        record_id=crm_record_id, unmapped=unmapped)
        self.known.learn(self._owner, answer.body["id"], crm_record_id)  # stamped by this write
        if (listed := self._listed()) is not None:
            listed[answer.body["id"]] = crm_record_id
        try:
            written = mapping.graph_to_canonical(answer.body)
        except mapping.InvalidEvent as exc:  # written but not readable back: the engine keeps what it sent
            return WriteResult(answer.body["id"], answer.body.get("@odata.etag"), None,
                               (*unmapped, f"read back: {exc}"))
        return WriteResult(answer.body["id"], answer.body.get("@odata.etag"), written.event, tuple(unmapped))

    async def all_day_zone(self) -> str:
        """The mailbox's time zone (mailboxSettings, https://learn.microsoft.com/graph/api/user-get-mailboxsettings):
        an all-day event written midnight to midnight in UTC shows in Outlook across two days for anyone
        west or east of UTC. Read once an hour per mailbox; UTC when it cannot be read (logged)."""
        kept = _mailbox_zones.get(self.mailbox.lower())
        if kept is not None and kept[1] > time.monotonic() - _ZONE_KEPT_S:
            return kept[0]
        try:
            answer = await self.client.request("GET", f"{self._user}/mailboxSettings")
        except GraphError as exc:
            log.warning("mailbox time zone not readable: all-day events written in UTC", mailbox=self.mailbox,
                        error=str(exc))
            return "UTC"
        zone = str(answer.body.get("timeZone") or "UTC")
        _mailbox_zones[self.mailbox.lower()] = (zone, time.monotonic())
        return zone

    async def delete(self, provider_id: str) -> None:
        self.known.forget(self._owner, provider_id)
        if (listed := self._listed()) is not None:
            listed.pop(provider_id, None)
        try:
            await self.client.request("DELETE", self._event_path(provider_id))
        except GraphError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    async def delete_all_synced(self) -> int:
        """Disabling the sync: every event we wrote for this user goes; the user's own events stay.
        Deletes that failed are raised after all the others were tried; a retry finishes the job."""
        event_ids = list(await self._our_events())
        self._listing = None
        for event_id in event_ids:
            self.known.forget(self._owner, event_id)
        answers = await self.client.batch([BatchRequest("DELETE", self._event_path(i)) for i in event_ids])
        failed = [(i, a) for i, a in zip(event_ids, answers) if not a.ok and a.status != 404]
        if failed:
            event_id, answer = failed[0]
            raise error_of(answer, f"delete of {len(failed)} synced events, first {event_id}")
        log.info("synced events deleted", mailbox=self.mailbox, count=len(event_ids))
        return len(event_ids)

    # --- push -------------------------------------------------------------------------------------
    async def watch(self, address: str, secret: str) -> Channel:
        """A subscription to the mailbox's events, every calendar's ("all event changes in the user's
        mailbox", https://learn.microsoft.com/graph/outlook-change-notifications-overview): each notification
        only starts a delta round of the synced calendar."""
        return await self.subscriptions.create(f"{self._user.lstrip('/')}/events", address, secret)

    async def renew(self, channel: Channel) -> Channel:
        """Extend the subscription in place; SubscriptionGone (a LookupError) when Graph has dropped it."""
        return await self.subscriptions.renew(channel)

    async def unwatch(self, channel: Channel) -> None:
        await self.subscriptions.delete(channel)

    def _event_path(self, event_id: str) -> str:
        return f"{self._user}/events/{quote(event_id, safe='')}"

