"""The in-memory Calendar v3 model: calendars, each account's calendar list, events and their changes.

Each write stamps the event with the calendar's next change number; sync tokens are change numbers, so an
incremental list is "every event whose number is above the token's" (calendar_query.py). Methods raise
`ProviderError`s with Google's status and body. One lock guards everything: API handlers run on the event
loop, control handlers and `/_sandbox/reset` in uvicorn's thread pool.
"""
from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sandbox.errors import google_error
from sandbox.google.calendar_events import (
    WRITABLE_FIELDS,
    EventTime,
    check_event_id,
    clean_event,
    format_instant_ms,
    invalid,
    merge_patch,
    zone,
)
from sandbox.google.calendar_list import ROLES, AccountList, EntryState, apply_entry_write
from sandbox.google.recurrence import Recurrence, instance_id, original_from_stamp, split_instance_id
from sandbox.state import Account

WRITE_ROLES = frozenset({"writerWithoutPrivateAccess", "writer", "owner"})
SEND_UPDATES = frozenset({"all", "externalOnly", "none"})
# Changes to these make a new revision of the event (RFC 5545 section 3.8.7.4, SEQUENCE).
SIGNIFICANT_FIELDS = ("start", "end", "recurrence", "status")


def not_found():
    return google_error(404, "notFound", "Not Found")


@dataclass(slots=True)
class StoredEvent:
    """One event as the API returns it, with what listing and expansion need kept parsed."""

    resource: dict
    seq: int
    order: int
    start: EventTime
    end: EventTime
    recurrence: Recurrence | None = None
    series_id: str | None = None
    original: datetime | None = None

    @property
    def cancelled(self) -> bool:
        return self.resource["status"] == "cancelled"

    def duration(self) -> timedelta:
        """Wall-clock length, so that instances keep it across DST changes."""
        if self.start.all_day:
            return self.end.value - self.start.value  # type: ignore[operator]
        return self.end.value.replace(tzinfo=None) - self.start.value.replace(tzinfo=None)  # type: ignore[union-attr]


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str
    resource_id: str = field(default_factory=lambda: secrets.token_urlsafe(20))
    description: str = ""
    events: dict[str, StoredEvent] = field(default_factory=dict)
    seq: int = 0
    # Part of every sync token: random per calendar, so a token from another calendar or from before a
    # reset is refused; bumped to refuse every token issued so far.
    generation: int = field(default_factory=lambda: secrets.randbelow(1 << 30))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass(frozen=True, slots=True)
class ListEntry:
    calendar: Calendar
    access_role: str
    primary: bool
    state: EntryState | None = None  # the account's own settings for the calendar (calendar list views)

    @property
    def writable(self) -> bool:
        return self.access_role in WRITE_ROLES


class CalendarStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calendars: dict[str, Calendar] = {}
        self.lists: dict[str, AccountList] = {}  # account id -> its calendar list
        self.sent_updates: dict[str, deque] = {}
        self._order = 0
        self._last_micros = 0
        self.empty_first_page = False

    def reset(self) -> None:
        with self.lock:
            self.empty_first_page = False  # a control setting (calendar_control.py)
            self.calendars.clear()
            self.lists.clear()
            self.sent_updates.clear()

    def _now_micros(self) -> int:
        """Strictly increasing, so that every write gets its own `updated` and etag."""
        self._last_micros = max(time.time_ns() // 1000, self._last_micros + 1)
        return self._last_micros

    def _rewrite_micros(self, previous: dict) -> int:
        """A write of an existing event: `updated` shows milliseconds only, so two writes of one event in
        the same millisecond would show the same `updated`; the later one moves to the next millisecond,
        as each of Google's writes shows a later `updated` than the one before."""
        now = self._now_micros()
        before = int(previous.get("etag", '"0"').strip('"') or 0)
        if now // 1000 <= before // 1000:
            now = (before // 1000 + 1) * 1000
            self._last_micros = max(self._last_micros, now)
        return now

    # --- calendars and the calendar list ------------------------------------------------------------
    def account_list(self, account: Account) -> AccountList:
        """The account's calendar list; its primary calendar (id = its address) exists from the start."""
        found = self.lists.get(account.id)
        if found is None:
            key = account.email.lower()
            self.calendars.setdefault(key, Calendar(account.email, account.email, "UTC"))
            found = self.lists[account.id] = AccountList()
            found.entries[key] = EntryState("owner")
            found.touch(found.entries[key], self._now_micros())
        return found

    def _entry(self, account: Account, key: str, state: EntryState) -> ListEntry:
        return ListEntry(self.calendars[key], state.role, key == account.email.lower(), state)

    def entry(self, account: Account, calendar_id: str, write: bool = False) -> ListEntry:
        """The calendar as this account sees it; `primary` is the account's own calendar."""
        with self.lock:
            entries = self.account_list(account).entries
            key = account.email.lower() if calendar_id == "primary" else calendar_id.lower()
            state = entries.get(key)
            if state is None or state.role == "none" or state.deleted:
                raise not_found()
            entry = self._entry(account, key, state)
        if write and not entry.writable:
            raise google_error(403, "requiredAccessLevel", "You need to have writer access to this calendar.")
        return entry

    def list_entry(self, account: Account, key: str) -> ListEntry:
        """An entry of the account's list by calendar key, deleted ones included (listing with showDeleted)."""
        with self.lock:
            return self._entry(account, key, self.account_list(account).entries[key])

    def add_calendar(
        self, account: Account, summary: str, access_role: str, time_zone: str, calendar_id: str | None
    ) -> ListEntry:
        """A secondary calendar in the account's list; an existing id is shared with the given role."""
        if access_role not in ROLES[1:]:
            raise ValueError(f"access role must be one of {ROLES[1:]}")
        with self.lock:
            calendar_id = calendar_id or f"{secrets.token_hex(16)}@group.calendar.google.com"
            key = calendar_id.lower()
            calendar = self.calendars.setdefault(key, Calendar(calendar_id, summary, time_zone))
            account_list = self.account_list(account)
            state = account_list.entries.get(key)
            if state is None or state.deleted:
                state = account_list.entries[key] = EntryState(access_role)
            state.role = access_role
            account_list.touch(state, self._now_micros())
            return ListEntry(calendar, access_role, False, state)

    def restore_entry(self, account: Account, calendar_id: str, body: dict) -> ListEntry:
        """calendarList.insert: put back a calendar the account has access to (a removed entry)."""
        with self.lock:
            key = str(calendar_id).lower()
            account_list = self.account_list(account)
            state = account_list.entries.get(key)
            if state is None or state.role == "none":
                raise not_found()
            state.deleted = False
            state.settings = apply_entry_write(EntryState(state.role), body, patch=True)
            account_list.touch(state, self._now_micros())
            return self._entry(account, key, state)

    def write_entry(self, account: Account, calendar_id: str, body: dict, patch: bool) -> ListEntry:
        """calendarList.patch/update: the account's own settings for the calendar."""
        with self.lock:
            entry = self.entry(account, calendar_id)
            account_list = self.account_list(account)
            state = account_list.entries[entry.calendar.id.lower()]
            state.settings = apply_entry_write(state, body, patch)
            account_list.touch(state, self._now_micros())
            return self._entry(account, entry.calendar.id.lower(), state)

    def remove_entry(self, account: Account, calendar_id: str) -> None:
        """calendarList.delete: the calendar leaves this account's list (it shows as deleted in a sync)."""
        with self.lock:
            entry = self.entry(account, calendar_id)
            if entry.primary:
                # Sandbox wording: Google refuses to remove the primary calendar from its own list.
                raise invalid("The primary calendar cannot be removed from the calendar list.", "calendarId")
            self._mark_removed(self.account_list(account), entry.calendar.id.lower())

    def _mark_removed(self, account_list: AccountList, key: str) -> None:
        state = account_list.entries[key]
        state.deleted = True
        account_list.touch(state, self._now_micros())

    def create_calendar(self, account: Account, body: dict) -> ListEntry:
        """calendars.insert: a new secondary calendar the account owns."""
        if not isinstance(body, dict) or not body.get("summary"):
            raise invalid("Missing title.", "summary", reason="required")
        time_zone = body.get("timeZone") or "UTC"
        if zone(time_zone) is None:
            raise invalid("Invalid time zone.", "timeZone")
        entry = self.add_calendar(account, str(body["summary"]), "owner", time_zone, None)
        entry.calendar.description = str(body.get("description") or "")
        return entry

    def delete_calendar(self, account: Account, calendar_id: str) -> None:
        """calendars.delete: an owned secondary calendar is gone, from every list that held it."""
        with self.lock:
            entry = self.entry(account, calendar_id)
            if entry.primary:
                # https://developers.google.com/calendar/api/v3/reference/calendars/delete: "Use
                # calendars.clear for clearing all events on primary calendars instead."
                # The reason Google gives is not documented: the sandbox answers a plain 400 `invalid`.
                raise invalid("The primary calendar cannot be deleted; clear it instead.", "calendarId")
            if entry.access_role != "owner":
                raise google_error(403, "forbidden", "Forbidden")
            key = entry.calendar.id.lower()
            for account_list in self.lists.values():
                if key in account_list.entries and not account_list.entries[key].deleted:
                    self._mark_removed(account_list, key)

    def invalidate_sync_tokens(self, account: Account) -> int:
        """Every sync token issued for the account's calendars and calendar list answers 410 from now on."""
        with self.lock:
            account_list = self.account_list(account)
            account_list.generation += 1
            for key in account_list.entries:
                self.calendars[key].generation += 1
            return len(account_list.entries)

    # --- sendUpdates log ------------------------------------------------------------------------------
    def record_send_updates(self, account: Account, method: str, calendar: Calendar, event_id: str, value):
        if value is not None and value not in SEND_UPDATES:
            raise invalid("Invalid value for: sendUpdates", "sendUpdates")
        with self.lock:
            log = self.sent_updates.setdefault(account.id, deque(maxlen=10_000))
            log.append({"method": method, "calendarId": calendar.id, "eventId": event_id, "sendUpdates": value})

    # --- events ---------------------------------------------------------------------------------------
    def get_event(self, calendar: Calendar, event_id: str) -> StoredEvent:
        """A stored event (deleted ones too: they read back as `cancelled`) or an unmodified instance."""
        with self.lock:
            stored = calendar.events.get(event_id)
            if stored is not None:
                return stored
            instance = self._virtual_instance(calendar, event_id)
            if instance is None:
                raise not_found()
            return instance

    def insert_event(self, entry: ListEntry, account: Account, body: dict) -> dict:
        calendar = entry.calendar
        event_id = check_event_id(body["id"]) if body.get("id") is not None else secrets.token_hex(13)
        clean = clean_event(body, calendar.time_zone, calendar.id, account.email)
        recurrence = Recurrence(clean.fields["recurrence"], clean.start) if clean.fields.get("recurrence") else None
        with self.lock:
            if event_id in calendar.events:
                # Taken ids stay taken after a delete (events.insert reference, `id`).
                raise google_error(409, "duplicate", "The requested identifier already exists.")
            now = self._now_micros()
            resource = self._resource(entry, account, event_id, clean.fields, now, now)
            resource["iCalUID"] = clean.fields.get("iCalUID") or f"{event_id}@google.com"
            resource["sequence"] = _sequence(clean.fields.get("sequence"), 0)
            calendar.events[event_id] = self._stored(calendar, resource, clean, recurrence)
            return resource

    def write_event(
        self, entry: ListEntry, account: Account, event_id: str, body: dict, if_match: str | None, patch: bool
    ) -> dict:
        """events.patch (merge into the stored event) and events.update (replace it). Writing an instance
        of a series stores an exception carrying recurringEventId and originalStartTime."""
        calendar = entry.calendar
        with self.lock:
            current = self.get_event(calendar, event_id)
            _check_etag(current, if_match)
            old = current.resource
            base = {k: v for k, v in old.items() if k in WRITABLE_FIELDS}
            merged = merge_patch(base, body) if patch else dict(body)
            if current.series_id:
                merged.pop("recurrence", None)
            clean = clean_event(merged, calendar.time_zone, calendar.id, account.email)
            recurrence = Recurrence(clean.fields["recurrence"], clean.start) if clean.fields.get("recurrence") else None
            sequence = _sequence(clean.fields.get("sequence"), old.get("sequence", 0))
            if sequence == old.get("sequence", 0) and any(old.get(f) != clean.fields.get(f) for f in SIGNIFICANT_FIELDS):
                sequence += 1
            now = self._rewrite_micros(old)
            resource = self._resource(entry, account, event_id, clean.fields, _created_micros(old), now)
            resource["iCalUID"] = old["iCalUID"]
            resource["sequence"] = sequence
            for key in ("recurringEventId", "originalStartTime", "creator", "organizer", "htmlLink"):
                if key in old:
                    resource[key] = old[key]
            stored = self._stored(calendar, resource, clean, recurrence, current.series_id, current.original)
            stored.order = current.order
            calendar.events[event_id] = stored
            return resource

    def delete_event(self, entry: ListEntry, event_id: str, if_match: str | None) -> None:
        """Deleting marks the event cancelled (its id stays taken); deleting a series cancels its
        exceptions too; deleting an instance stores a cancelled exception."""
        calendar = entry.calendar
        with self.lock:
            current = self.get_event(calendar, event_id)
            _check_etag(current, if_match)
            if current.cancelled:
                raise google_error(410, "deleted", "Resource has been deleted")
            self._cancel(calendar, current)
            if current.recurrence is not None:
                for other in list(calendar.events.values()):
                    if other.series_id == event_id and not other.cancelled:
                        self._cancel(calendar, other)

    def _cancel(self, calendar: Calendar, current: StoredEvent) -> None:
        resource = dict(current.resource)
        resource["status"] = "cancelled"
        now = self._rewrite_micros(current.resource)
        resource["etag"], resource["updated"] = f'"{now}"', format_instant_ms(now)
        current.resource, current.seq = resource, calendar.next_seq()
        calendar.events[resource["id"]] = current

    # --- building resources ---------------------------------------------------------------------------
    def _resource(self, entry: ListEntry, account: Account, event_id: str, fields: dict, created: int, now: int):
        calendar = entry.calendar
        organizer = {"email": calendar.id, "self": True}
        if not entry.primary:
            organizer["displayName"] = calendar.summary
        eid = base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
        updated = format_instant_ms(now)
        resource = {
            "kind": "calendar#event",
            "etag": f'"{now}"',
            "id": event_id,
            "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
            "created": updated if created == now else format_instant_ms(created),
            "updated": updated,
            "creator": {"email": account.email, "self": True},
            "organizer": organizer,
            "eventType": "default",
        }
        resource.update(fields)
        return resource

    def _stored(self, calendar, resource, clean, recurrence, series_id=None, original=None) -> StoredEvent:
        self._order += 1
        return StoredEvent(resource, calendar.next_seq(), self._order, clean.start, clean.end, recurrence,
                           series_id, original)

    def _virtual_instance(self, calendar: Calendar, event_id: str) -> StoredEvent | None:
        """An instance of a series that has no exception stored: derived from the series each time."""
        parts = split_instance_id(event_id)
        if parts is None:
            return None
        series = calendar.events.get(parts[0])
        if series is None or series.recurrence is None:
            return None
        original = original_from_stamp(parts[1], series.recurrence)
        if original is None or not series.recurrence.includes(original):
            return None
        return instance_of(series, original)


def instance_of(series: StoredEvent, original: datetime) -> StoredEvent:
    """The instance of `series` that starts (originally) at `original`, as events.instances shows it."""
    recurrence = series.recurrence
    assert recurrence is not None
    start = recurrence.event_time(original, series.start.zone_name)
    end = EventTime(start.value + series.duration(), start.all_day, series.end.zone_name)
    resource = dict(series.resource)
    del resource["recurrence"]
    resource["id"] = instance_id(series.resource["id"], original, recurrence.all_day)
    resource["start"], resource["end"] = start.to_json(), end.to_json()
    resource["recurringEventId"] = series.resource["id"]
    resource["originalStartTime"] = start.to_json()
    return StoredEvent(resource, series.seq, series.order, start, end, None, series.resource["id"], original)


def _check_etag(current: StoredEvent, if_match: str | None) -> None:
    # https://developers.google.com/calendar/api/guides/version-resources: a stale If-Match gets 412.
    if if_match and if_match != "*" and if_match != current.resource["etag"]:
        raise google_error(412, "conditionNotMet", "Precondition Failed", location="If-Match", location_type="header")


def _sequence(given, current: int) -> int:
    if given is None:
        return current
    if not isinstance(given, int) or given < current:
        raise invalid(
            "Invalid sequence value. The specified sequence number is below the current sequence number "
            "of the resource.", "sequence",
        )
    return given


def _created_micros(resource: dict) -> int:
    created = datetime.fromisoformat(resource["created"])
    return int(created.timestamp() * 1_000_000)
