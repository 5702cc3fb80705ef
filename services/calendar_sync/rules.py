"""The decisions of calendar_sync, pure: what is synced, what is our echo, in which order, and what
enabling a configuration would do.

The three-way merge lives in merge.py and is re-exported here, so the engine imports one module.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from dateutil import rrule

from schemas import ChangeSource, CrmChange, CrmModule, Direction, Integration, IntegrationConfig
from services.calendar_sync.merge import Conflict, MergeResult, merge_three_way
from services.calendar_sync.model import RULE_KINDS, Attendee, CanonicalEvent
from services.calendar_sync.ports import ProviderEvent

__all__ = [
    "Conflict", "Decision", "MergeResult", "Preview", "brought_into_sync", "crm_change_decision",
    "first_sync_order", "google_event_id", "guests_to_add_as_contacts", "meeting_key", "merge_three_way",
    "modified_time", "preview", "provider_change_is_echo", "send_updates",
]

CALENDAR_INTEGRATIONS = frozenset({Integration.GOOGLE_CALENDAR, Integration.MICROSOFT_CALENDAR})
BULK_LOADS = frozenset({ChangeSource.IMPORT, ChangeSource.MIGRATION})
"""How records enter the CRM in bulk: such events are never synced (DESIGN.md, Microsoft 365 calendar:
imported or migrated records are not synced, bulk-updated ones are)."""


# --- CRM changes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    sync: bool
    reason: str
    remove: bool = False  # the event left this user's calendar (moved to another owner): delete our copy


def brought_into_sync(in_sync_before: bool | None, source: ChangeSource | str) -> bool:
    """Whether a CRM event is synced after a change by `source`.

    An event that entered the CRM by import or migration is not, until a person creates, edits or
    bulk-updates it: from then on it is, whatever changes it later (DESIGN.md, Microsoft 365 calendar:
    imported or migrated records are not synced, bulk-updated ones are).
    """
    return bool(in_sync_before) or ChangeSource(source) not in BULK_LOADS


def crm_change_decision(
    change: CrmChange,
    config: IntegrationConfig,
    our_correlation_ids: Callable[[str], bool] | Collection[str],
    *,
    in_sync: bool | None = None,
    mapped: bool = False,
) -> Decision:
    """Whether a CRM change is written to this user's calendar, and why (or why not).

    `our_correlation_ids` recognises the correlation ids of our own writebacks: the CRM returns them
    on the change they cause, and such a change is our echo, whatever its source. `in_sync`, when the
    engine knows it, says whether the event was brought into sync by this or an earlier change
    (`brought_into_sync`): a bulk load of such an event keeps both sides equal; of any other, it is
    not synced. `mapped`: this calendar holds a copy, which goes when the event moves to another owner.
    """
    if config.integration not in CALENDAR_INTEGRATIONS:
        return Decision(False, f"{config.integration.value} is not a calendar integration")
    if change.module != CrmModule.EVENTS:
        return Decision(False, f"module {change.module.value} is not Events")
    if change.org_id != config.org_id:
        return Decision(False, "the event belongs to another org")
    if not config.enabled:
        return Decision(False, "the integration is disabled")
    if config.direction == Direction.PROVIDER_TO_CRM:
        return Decision(False, "direction provider_to_crm: CRM changes are not written to the provider")
    if change.correlation_id and _is_ours(change.correlation_id, our_correlation_ids):
        return Decision(False, "our own writeback coming back (echo)")
    if change.owner_id != config.user_id:
        if mapped:
            return Decision(True, f"moved to owner {change.owner_id}: removed from this calendar", remove=True)
        return Decision(False, "the event belongs to another user")
    if change.source in BULK_LOADS and not (in_sync or mapped):
        return Decision(False, f"changed by {change.source.value}: bulk loads are not synced")
    return Decision(True, f"{change.op.value} by {change.source.value}")


def _is_ours(correlation_id: str, ours: Callable[[str], bool] | Collection[str]) -> bool:
    return bool(ours(correlation_id)) if callable(ours) else correlation_id in ours


def provider_change_is_echo(event: CanonicalEvent | None, last_written_fingerprint: str | None) -> bool:
    """A provider change equal in every synced field to what we last wrote there is our own write."""
    return event is not None and last_written_fingerprint is not None and event.fingerprint() == last_written_fingerprint


# --- invitations --------------------------------------------------------------------------------

SendUpdates = Literal["none", "all", "externalOnly"]


def send_updates(
    previous: CanonicalEvent | None, current: CanonicalEvent, *, changed_by_user: bool, org_setting: SendUpdates = "none"
) -> SendUpdates:
    """Who the provider may mail about a write (Google's `sendUpdates`): nobody, unless a user changed
    the participant list in the CRM and the org lets such changes notify. A sync by itself never sends
    invitations or update mails: not for a first sync, a merge, a resync, or a time or title edit."""
    if not changed_by_user or previous is None:
        return "none"
    invited = {attendee.email for attendee in current.attendees}
    return org_setting if invited != {attendee.email for attendee in previous.attendees} else "none"


# --- ids and keys -------------------------------------------------------------------------------


def google_event_id(org_id: str, user_id: str, crm_record_id: str) -> str:
    """The Google event id for a CRM event: base32hex (a-v, 0-9), 52 characters, the same for the same
    record in the same user's calendar, so a retried or repeated create finds the event it made."""
    digest = hashlib.sha256(f"crmsync-calendar-v1\x1f{org_id}\x1f{user_id}\x1f{crm_record_id}".encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def meeting_key(event: CanonicalEvent) -> str | None:
    """What makes copies of one meeting on several users' calendars one CRM event: the iCalendar UID,
    trimmed and lower-cased (providers differ in case). None when the event has none."""
    uid = (event.ical_uid or "").strip().lower()
    return uid or None


# --- first sync ---------------------------------------------------------------------------------

T = TypeVar("T")


def first_sync_order(
    events: Iterable[T], now: dt.datetime, cap: int, *, closed_since: dt.datetime | None = None
) -> list[T]:
    """The events a first CRM -> provider sync writes, in order: events still to come or going on,
    soonest first, then those already over, most recently ended first; at most `cap` of them.

    `events` are canonical events or (key, event) pairs, returned as given. A recurring event counts by
    its current or next occurrence. `closed_since` leaves out events that ended before it (the window).
    Cancelled events are left out.
    """
    upcoming: list[tuple[dt.datetime, int, T]] = []
    closed: list[tuple[dt.datetime, int, T]] = []
    for position, item in enumerate(events):
        event: CanonicalEvent = item[1] if isinstance(item, tuple) else item  # type: ignore[assignment,index]
        if event.cancelled:
            continue
        start, end = _occurrence_around(event, now)
        if end > now or start >= now:
            upcoming.append((start, position, item))
        elif closed_since is None or end >= closed_since:
            closed.append((end, position, item))
    upcoming.sort(key=lambda entry: (entry[0], entry[1]))
    closed.sort(key=lambda entry: (-entry[0].timestamp(), entry[1]))
    return [item for _, _, item in upcoming + closed][: max(cap, 0)]


def _occurrence_around(event: CanonicalEvent, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(start, end) of the occurrence going on at `now`, else the next one, else the last one; for a
    single event, the event. A rule dateutil cannot read counts as its first occurrence."""
    start, end = event.start.instant(), event.end.instant()
    rules = [line for line in event.recurrence if line.startswith(RULE_KINDS)]
    if not rules:
        return start, end
    length = end - start
    try:
        if event.start.all_day:  # floating dates: occurrences as naive midnights, compared in UTC
            series = rrule.rrulestr("\n".join(rules), dtstart=start.replace(tzinfo=None), forceset=True)
            naive_now = now.astimezone(dt.UTC).replace(tzinfo=None)
            found = series.after(naive_now - length) or series.before(naive_now, inc=True)
            found = found.replace(tzinfo=dt.UTC) if found else None
        else:
            series = rrule.rrulestr("\n".join(rules), dtstart=event.start.date_time, forceset=True)
            found = series.after(now - length) or series.before(now, inc=True)
    except (ValueError, TypeError, OverflowError):
        return start, end
    return (found, found + length) if found else (start, end)


# --- guests as contacts -------------------------------------------------------------------------


def guests_to_add_as_contacts(
    attendees: Iterable[Attendee], known_contact_addresses: Iterable[str], own_addresses: Iterable[str]
) -> list[Attendee]:
    """The attendees that match no CRM contact by address (case-insensitive), once each, never the
    user themself: the guests that become CRM contacts."""
    skipped = {a.strip().lower() for a in known_contact_addresses} | {a.strip().lower() for a in own_addresses}
    guests: dict[str, Attendee] = {}
    for attendee in attendees:
        address = attendee.email.strip().lower()
        if "@" in address and address not in skipped and address not in guests:
            guests[address] = attendee
    return list(guests.values())


# --- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What enabling a configuration would do, counted per side, before anything is written."""

    create_in_provider: int = 0
    create_in_crm: int = 0
    update_in_provider: int = 0
    update_in_crm: int = 0
    link: int = 0  # events on both sides already (same iCalUID, or our extended property): linked, not duplicated
    delete_in_provider: int = 0
    delete_in_crm: int = 0


_EPOCH, _LATEST = dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC)


def preview(
    crm_events: Mapping[str, CanonicalEvent],
    provider_events: Mapping[str, ProviderEvent | CanonicalEvent],
    mappings: Mapping[str, str],
    *,
    direction: Direction = Direction.TWO_WAY,
    crm_modified_at: Mapping[str, dt.datetime] | None = None,
    listed_since: dt.datetime | None = None,
) -> Preview:
    """Count what a (re-)enabled sync would do, given the user's CRM events (by record id), the provider's
    events (by provider id; deleted ones may be included with event None) and the mappings left from
    an earlier sync (CRM id -> provider id).

    - A mapped pair both sides still hold is updated where it differs: one way, on the side written to;
      two ways, merged as a first sync merges (no snapshot: the later modification wins, the CRM on
      ties; `crm_modified_at` gives the CRM's times, ProviderEvent.updated_at the provider's).
    - A mapped pair one side no longer holds was deleted there while sync was off: deleted on the other
      side (crm_to_provider puts the provider's copy back instead). When the provider's events were
      listed for a window, `listed_since` is its start: a CRM event that ended before it is not missing.
    - An unmapped pair found by our extended property or the same meeting (iCalUID) is linked (and
      updated where it differs), never duplicated.
    - The rest are created on the other side; copies of one meeting become one CRM event.
    The direction leaves out the writes it does not allow.
    """
    counts = dict.fromkeys(Preview.__dataclass_fields__, 0)
    to_provider, to_crm = direction != Direction.PROVIDER_TO_CRM, direction != Direction.CRM_TO_PROVIDER
    live = {pid: p for pid, p in map(_as_provider_event, provider_events.items())
            if p.event is not None and not p.event.cancelled}
    mapped_crm_ids = {pid: crm_id for crm_id, pid in mappings.items()}
    unmapped_by_key: dict[str, str] = {}
    for pid, remote in live.items():
        if pid not in mapped_crm_ids:
            if remote.crm_record_id:
                unmapped_by_key.setdefault(f"record:{remote.crm_record_id}", pid)
            if key := meeting_key(remote.event):
                unmapped_by_key.setdefault(f"meeting:{key}", pid)
    claimed: set[str] = set()
    for crm_id, event in crm_events.items():
        pid = mappings.get(crm_id)
        if pid is None:
            pid = unmapped_by_key.get(f"record:{crm_id}") or unmapped_by_key.get(f"meeting:{meeting_key(event)}")
            if pid is None or pid in claimed:
                counts["create_in_provider"] += to_provider
                continue
            counts["link"] += 1
        claimed.add(pid)
        if pid in live:
            crm_time, provider_time = (crm_modified_at or {}).get(crm_id, _EPOCH), modified_time(live[pid].updated_at)
            if direction != Direction.TWO_WAY:  # one way: the source side is the master
                crm_time, provider_time = (_LATEST, _EPOCH) if to_provider else (_EPOCH, _LATEST)
            merged = merge_three_way(None, event, live[pid].event, crm_time, provider_time)
            counts["update_in_provider"] += merged.to_provider and to_provider
            counts["update_in_crm"] += merged.to_crm and to_crm
        elif listed_since is not None and event.end.instant() < listed_since:
            continue  # outside the listed window: not known to be missing
        elif direction == Direction.CRM_TO_PROVIDER:
            counts["create_in_provider"] += 1  # the provider holds a copy: it is put back
        else:
            counts["delete_in_crm"] += 1
    new_meetings: set[str] = set()
    for pid, remote in live.items():
        if pid in claimed:
            continue
        if mapped_crm_ids.get(pid) or remote.crm_record_id:  # the CRM deleted it while sync was off
            counts["delete_in_provider"] += to_provider
            continue
        meeting = meeting_key(remote.event) or f"id:{pid}"
        counts["create_in_crm"] += to_crm and meeting not in new_meetings
        new_meetings.add(meeting)
    return Preview(**counts)


def _as_provider_event(entry: tuple[str, ProviderEvent | CanonicalEvent]) -> tuple[str, ProviderEvent]:
    pid, value = entry
    return pid, value if isinstance(value, ProviderEvent) else ProviderEvent(provider_id=pid, event=value)


def modified_time(value: str | None) -> dt.datetime:
    """When an event was last modified, from a provider's `updated` / `lastModifiedDateTime` (or a time
    we stored): the one reading of such times, aware, for the last-writer-wins of a clash.

    Deliberate on bad input: a provider date that is missing or malformed must not stop a user's sync
    (a raise would fail the whole pull again on every notification). It counts as the epoch: the event
    is still synced, and a field both sides changed goes to the CRM, whose edit has a real time, as ties
    do. A time without an offset is read as UTC, the zone both providers write these in.
    """
    if not value:
        return _EPOCH
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        return _EPOCH
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
