"""Each account's calendar list (calendarList resource): its entries, their changes and calendarList.list.

Reference: https://developers.google.com/calendar/api/v3/reference/calendarList/list and
https://developers.google.com/calendar/api/v3/reference/calendarList. What a sync client relies on:
- `maxResults` defaults to 100 and "can never be larger than 250"; pages end in `nextPageToken`, the last
  one carries `nextSyncToken`;
- with `syncToken` only entries changed since come back, and "all entries deleted and hidden since the
  previous list request will always be in the result set": `showDeleted`/`showHidden` cannot be false
  then, and "minAccessRole query parameter cannot be specified together with nextSyncToken" (400);
- an expired token answers 410, after which the client lists again with no token;
- deleted entries show only with `showDeleted` (carrying `deleted: true`), hidden ones only with
  `showHidden`; "if only read-only fields such as calendar properties or ACLs have changed, the entry
  won't be returned", so only writes to the entry itself (and its removal) move it into a sync.
Every change stamps the entry with the list's next change number, as events do in calendar_store.py.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sandbox.google.calendar_events import invalid
from sandbox.google.calendar_paging import (
    decode_numbers,
    decode_page_token,
    encode_numbers,
    flag,
    full_sync_required,
    page_size,
)

# Weakest first; minAccessRole keeps an entry whose role is at least the one named
# (calendarList.list reference, `minAccessRole`).
ROLES = ("none", "freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer", "owner")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 250
# Fields of an entry the account may write (calendarList.patch/update); the rest are the calendar's.
WRITABLE_ENTRY_FIELDS = ("hidden", "selected", "summaryOverride", "colorId", "backgroundColor",
                         "foregroundColor", "defaultReminders", "notificationSettings")


@dataclass
class EntryState:
    """This account's view of one calendar: its role and its own settings for it."""

    role: str
    settings: dict = field(default_factory=lambda: {"colorId": "14", "selected": True})
    deleted: bool = False
    seq: int = 0
    etag: int = 0

    @property
    def hidden(self) -> bool:
        return bool(self.settings.get("hidden"))


@dataclass
class AccountList:
    entries: dict[str, EntryState] = field(default_factory=dict)
    seq: int = 0
    # In every sync token: refuses tokens from before a reset or an invalidation, as Calendar.generation.
    generation: int = field(default_factory=lambda: secrets.randbelow(1 << 30))

    def touch(self, state: EntryState, micros: int) -> None:
        self.seq += 1
        state.seq, state.etag = self.seq, micros


@dataclass
class ListQuery:
    max_results: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    snapshot: int | None = None
    sync_after: int | None = None
    min_role: str | None = None
    show_deleted: bool = False
    show_hidden: bool = False


def parse_list_query(params, account_list: AccountList) -> ListQuery:
    """calendarList.list parameters, checked as the API does before listing anything."""
    query = ListQuery()
    query.max_results = page_size(params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    show_deleted, show_hidden = flag(params, "showDeleted"), flag(params, "showHidden")
    query.min_role = params.get("minAccessRole")
    if query.min_role is not None and query.min_role not in ROLES[1:]:
        raise invalid("Invalid value for: minAccessRole", "minAccessRole")
    token = params.get("syncToken")
    if token is not None:
        if query.min_role is not None:
            raise invalid("The 'minAccessRole' parameter cannot be used together with syncToken.", "minAccessRole")
        for name, value in (("showDeleted", show_deleted), ("showHidden", show_hidden)):
            if value is False:
                raise invalid(f"{name}=false cannot be used together with syncToken.", name)
        numbers = decode_numbers(token, 2)
        if numbers is None or numbers[0] != account_list.generation or numbers[1] > account_list.seq:
            raise full_sync_required()
        query.sync_after, show_deleted, show_hidden = numbers[1], True, True
    query.show_deleted, query.show_hidden = bool(show_deleted), bool(show_hidden)
    if params.get("pageToken") is not None:
        query.offset, query.snapshot = decode_page_token(params["pageToken"])
    return query


def selected_keys(account_list: AccountList, query: ListQuery, snapshot: int) -> list[str]:
    """The calendar keys the query lists, in the list's order."""
    found = []
    for key, state in account_list.entries.items():
        if state.seq > snapshot or (query.sync_after is not None and state.seq <= query.sync_after):
            continue
        if (state.deleted and not query.show_deleted) or (state.hidden and not query.show_hidden):
            continue
        if query.min_role is not None and ROLES.index(state.role) < ROLES.index(query.min_role):
            continue
        found.append(key)
    return found


def list_page(account_list: AccountList, query: ListQuery, render) -> dict:
    """One page of calendarList.list: `render(key)` makes each entry's resource."""
    snapshot = account_list.seq if query.snapshot is None else query.snapshot
    keys = selected_keys(account_list, query, snapshot)
    end = query.offset + query.max_results
    page = {"kind": "calendar#calendarList", "etag": f'"{snapshot}"',
            "items": [render(key) for key in keys[query.offset:end]]}
    if end < len(keys):
        page["nextPageToken"] = encode_numbers(end, snapshot)
    else:
        page["nextSyncToken"] = encode_numbers(account_list.generation, snapshot)
    return page


def entry_fields(state: EntryState) -> dict:
    """The entry's own part of its resource: etag and this account's settings."""
    body = {"etag": f'"{state.etag}"', "accessRole": state.role}
    body.update(state.settings)
    if state.deleted:
        body["deleted"] = True
    return body


def apply_entry_write(state: EntryState, body: dict, patch: bool) -> dict:
    """calendarList.patch/update: the new settings; read-only fields are ignored as Google does."""
    if not isinstance(body, dict):
        raise invalid("Invalid calendar list entry.")
    current = dict(state.settings) if patch else {"colorId": state.settings.get("colorId", "14"), "selected": True}
    for name in WRITABLE_ENTRY_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name in ("hidden", "selected") and value is not None and not isinstance(value, bool):
            raise invalid(f"Invalid value for: {name}", name)
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    if not current.get("hidden"):
        current.pop("hidden", None)  # Google sends `hidden` only when true
    return current
