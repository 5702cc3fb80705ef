"""events.list and events.instances over the store: filters, expansion, ordering, pages and sync tokens.

Reference: https://developers.google.com/calendar/api/v3/reference/events/list and the sync guide
https://developers.google.com/calendar/api/guides/sync. A listing is a snapshot at the change number it
started at (kept in the page token), so the nextSyncToken on its last page picks up exactly the changes
made while the pages were read.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.errors import google_error
from sandbox.google.calendar_events import format_instant_ms, invalid, parse_timestamp
from sandbox.google.calendar_paging import (
    decode_numbers,
    decode_page_token,
    encode_numbers,
    flag,
    full_sync_required,
    page_size,
)
from sandbox.google.calendar_store import Calendar, ListEntry, StoredEvent, instance_of

DEFAULT_PAGE_SIZE = 250
# "The page size can never be larger than 2500 events": larger asks are served 2500 at most.
MAX_PAGE_SIZE = 2500
# Parameters that cannot come with a syncToken (events.list reference, `syncToken`).
NOT_WITH_SYNC_TOKEN = (
    "iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin", "timeMax",
    "updatedMin",
)
DEFAULT_REMINDERS = [{"method": "popup", "minutes": 30}]


@dataclass
class EventQuery:
    """The parameters of one events.list/instances call, parsed and checked."""

    max_results: int = DEFAULT_PAGE_SIZE
    page_offset: int = 0
    snapshot: int | None = None
    sync_after: int | None = None
    time_min: datetime | None = None
    time_max: datetime | None = None
    updated_min: datetime | None = None
    single_events: bool = False
    show_deleted: bool = False
    order_by: str | None = None
    text: list[str] | None = None
    ical_uid: str | None = None
    private_filters: list[tuple[str, str]] | None = None
    shared_filters: list[tuple[str, str]] | None = None


def _property_filters(params, name: str) -> list[tuple[str, str]] | None:
    values = params.getlist(name)
    if not values:
        return None
    filters = []
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise invalid(f"Invalid value for: {name}", name)
        filters.append((key, wanted))
    return filters


def parse_query(params, calendar: Calendar) -> EventQuery:
    """Check the parameters as the API does before any listing is done."""
    query = EventQuery()
    query.max_results = page_size(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    query.single_events = bool(flag(params, "singleEvents"))
    query.show_deleted = bool(flag(params, "showDeleted"))
    sync_token = params.get("syncToken")
    if sync_token is not None:
        for name in NOT_WITH_SYNC_TOKEN:
            if params.get(name) is not None:
                raise invalid(f"The '{name}' parameter cannot be used together with syncToken.", name)
        if params.get("showDeleted") == "false":
            raise invalid("showDeleted=false cannot be used together with syncToken.", "showDeleted")
        query.sync_after = decode_sync_token(sync_token, calendar)
        query.show_deleted = True
    order_by = params.get("orderBy")
    if order_by is not None:
        if order_by not in ("startTime", "updated"):
            raise invalid("Invalid value for: orderBy", "orderBy")
        if order_by == "startTime" and not query.single_events:
            raise invalid("The requested ordering is not available for the particular query.", "orderBy",
                          reason="badRequest")
        query.order_by = order_by
    for name in ("timeMin", "timeMax", "updatedMin"):
        if params.get(name) is not None:
            setattr(query, _snake(name), parse_timestamp(params[name], name))
    if query.time_min and query.time_max and query.time_min >= query.time_max:
        raise invalid("The specified time range is empty.", "timeMax", reason="timeRangeEmpty")
    if params.get("q"):
        query.text = params["q"].lower().split()
    query.ical_uid = params.get("iCalUID")
    query.private_filters = _property_filters(params, "privateExtendedProperty")
    query.shared_filters = _property_filters(params, "sharedExtendedProperty")
    if params.get("pageToken") is not None:
        query.page_offset, query.snapshot = decode_page_token(params["pageToken"])
    return query


def _snake(name: str) -> str:
    return {"timeMin": "time_min", "timeMax": "time_max", "updatedMin": "updated_min"}[name]


# --- tokens (opaque to clients: calendar_tokens.py) ---------------------------------------------------
def sync_token(calendar: Calendar, snapshot: int) -> str:
    return encode_numbers(calendar.generation, snapshot)


def decode_sync_token(token: str, calendar: Calendar) -> int:
    numbers = decode_numbers(token, 2)
    if numbers is None or numbers[0] != calendar.generation or numbers[1] > calendar.seq:
        raise full_sync_required()
    return numbers[1]


# --- matching ----------------------------------------------------------------------------------------
def _matches(event: StoredEvent, query: EventQuery) -> bool:
    resource = event.resource
    if query.ical_uid is not None and resource.get("iCalUID") != query.ical_uid:
        return False
    if query.updated_min is not None and resource["updated"] < format_instant_ms(_micros(query.updated_min)):
        return False
    for scope, filters in (("private", query.private_filters), ("shared", query.shared_filters)):
        if filters:
            values = resource.get("extendedProperties", {}).get(scope, {})
            if any(values.get(key) != wanted for key, wanted in filters):
                return False
    return not query.text or _has_text(resource, query.text)


def _has_text(resource: dict, words: list[str]) -> bool:
    haystack = " ".join(
        [resource.get("summary", ""), resource.get("description", ""), resource.get("location", ""),
         resource.get("organizer", {}).get("email", "")]
        + [f"{a.get('email', '')} {a.get('displayName', '')}" for a in resource.get("attendees", [])]
    ).lower()
    return all(word in haystack for word in words)


def _in_window(event: StoredEvent, query: EventQuery) -> bool:
    """timeMax bounds the start (exclusive), timeMin the end (exclusive)."""
    if query.time_max is not None and event.start.as_utc() >= query.time_max:
        return False
    return query.time_min is None or event.end.as_utc() > query.time_min


def _visible(event: StoredEvent, query: EventQuery) -> bool:
    """Deleted events show with showDeleted, a sync token or updatedMin; cancelled instances (exceptions)
    also show in an unexpanded listing, as the `showDeleted` reference describes."""
    if not event.cancelled or query.show_deleted or query.updated_min is not None:
        return True
    return event.series_id is not None and not query.single_events


def _starts_in_window(series: StoredEvent, query: EventQuery, now: datetime) -> list[datetime]:
    """Original starts of the series' instances that overlap the query's window."""
    after = query.time_min - series.duration() if query.time_min else None
    return series.recurrence.starts_between(after, query.time_max, now)  # type: ignore[union-attr]


def _instances(series: StoredEvent, query: EventQuery, exceptions: set, now: datetime) -> list[StoredEvent]:
    return [instance_of(series, s) for s in _starts_in_window(series, query, now) if s not in exceptions]


def _candidates(calendar: Calendar, query: EventQuery, snapshot: int) -> list[StoredEvent]:
    """Every event the query selects in the snapshot, in the order it lists them."""
    now = datetime.now(UTC)
    exceptions: dict[str, set] = {}
    for event in calendar.events.values():
        if event.series_id is not None:
            exceptions.setdefault(event.series_id, set()).add(event.original)
    found = []
    for event in calendar.events.values():
        if event.seq > snapshot or (query.sync_after is not None and event.seq <= query.sync_after):
            continue
        if not _matches(event, query):
            continue
        if event.recurrence is None:
            if _visible(event, query) and _in_window(event, query):
                found.append(event)
        elif query.single_events:
            if query.show_deleted or not event.cancelled:
                found.extend(_instances(event, query, exceptions.get(event.resource["id"], set()), now))
        elif _visible(event, query) and (
            (query.time_min is None and query.time_max is None) or _starts_in_window(event, query, now)
        ):
            found.append(event)
    if query.order_by == "startTime":
        found.sort(key=lambda e: (e.start.as_utc(), e.order))
    elif query.order_by == "updated":
        found.sort(key=lambda e: e.resource["updated"])
    else:
        found.sort(key=lambda e: e.order)
    return found


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def listed_resource(event: StoredEvent) -> dict:
    """What a listing shows: deleted events carry little more than their id ("Deleted events are only
    guaranteed to have the id field populated", events reference `status`)."""
    resource = event.resource
    if resource["status"] != "cancelled":
        return resource
    minimal = {k: resource[k] for k in ("kind", "etag", "id", "status", "updated") if k in resource}
    for key in ("recurringEventId", "originalStartTime"):
        if key in resource:
            minimal[key] = resource[key]
    return minimal


def list_page(entry: ListEntry, query: EventQuery, select=_candidates, empty_first_page: bool = False) -> dict:
    """One page of events.list: items, then nextPageToken, or nextSyncToken on the last page."""
    calendar = entry.calendar
    snapshot = calendar.seq if query.snapshot is None else query.snapshot
    # "A page may be short or empty and still carry nextPageToken" (events.list reference, `pageToken`):
    # with the store's `empty_first_page` on, every listing starts with such an empty page.
    empty = empty_first_page and query.snapshot is None
    items = [] if empty else select(calendar, query, snapshot)
    end = query.page_offset + (0 if empty else query.max_results)
    page = {
        "kind": "calendar#events",
        "etag": f'"{snapshot}"',
        "summary": calendar.summary,
        "description": calendar.description,
        "updated": format_instant_ms(max(map(_updated_micros, items), default=_micros(datetime.now(UTC)))),
        "timeZone": calendar.time_zone,
        "accessRole": entry.access_role,
        "defaultReminders": DEFAULT_REMINDERS if entry.writable else [],
        "items": [listed_resource(e) for e in items[query.page_offset:end]],
    }
    if end < len(items) or empty:
        page["nextPageToken"] = encode_numbers(end, snapshot)
    else:
        page["nextSyncToken"] = sync_token(calendar, snapshot)
    return page


def _updated_micros(event: StoredEvent) -> int:
    return int(event.resource["etag"].strip('"'))


def list_instances(entry: ListEntry, series: StoredEvent, query: EventQuery) -> dict:
    """events.instances: the series expanded, its exceptions in place of the instances they replace."""
    if series.recurrence is None:
        raise google_error(400, "invalid", "The event is not a recurring event.")
    series_id = series.resource["id"]

    def select(calendar: Calendar, query: EventQuery, snapshot: int) -> list[StoredEvent]:
        now = datetime.now(UTC)
        exceptions = {e.original: e for e in calendar.events.values() if e.series_id == series_id}
        found = _instances(series, query, set(exceptions), now)
        found += [e for e in exceptions.values() if _in_window(e, query) and (query.show_deleted or not e.cancelled)]
        found.sort(key=lambda e: e.start.as_utc())
        return found

    page = list_page(entry, query, select)
    page.pop("nextSyncToken", None)
    return page
