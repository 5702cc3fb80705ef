"""What the sync engine needs of a calendar provider; Google and Microsoft adapters implement it.

The engine stays provider-agnostic: it asks for changes since a cursor, writes events under an id
derived from the CRM record (so a retried or repeated write cannot create a second event), and opens
push channels. Adapters translate provider errors into the exceptions below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from services.calendar_sync.model import CanonicalEvent, EventTime


class AuthFailed(Exception):
    """The user's grant is revoked or expired: the integration's status becomes auth_failed."""


class CursorExpired(Exception):
    """The sync token / delta link is no longer valid (Google 410, Graph syncStateNotFound): full resync."""


class ChangedMeanwhile(Exception):
    """A conditional write refused (HTTP 412): the provider's event is no longer the version we last synced."""


class NotWritable(Exception):
    """The target calendar does not exist or the user cannot write to it."""


@dataclass(frozen=True)
class ProviderEvent:
    """An event as read from the provider, with what the engine needs to map it back to a CRM record."""

    provider_id: str
    event: CanonicalEvent | None  # None when the provider reports it deleted
    crm_record_id: str | None = None  # our extended property, when we created it
    etag: str | None = None
    updated_at: str | None = None  # RFC 3339, for last-writer-wins on both-sides conflicts
    raw_problems: tuple[str, ...] = ()  # what could not be mapped (malformed date, unknown tz ...)
    series_id: str | None = None  # an exception of a recurring series: the series' provider id
    original_start: EventTime | None = None  # ... and the start the occurrence had in the series


@dataclass(frozen=True)
class ChangePage:
    events: list[ProviderEvent]
    next_cursor: str | None  # None until the last page
    final_cursor: str | None = None  # the sync token / delta link, on the last page only


@dataclass(frozen=True)
class Channel:
    channel_id: str
    resource_id: str
    expires_at: float
    secret: str


@dataclass(frozen=True)
class WriteResult:
    provider_id: str
    etag: str | None = None
    written: CanonicalEvent | None = None  # what the provider holds after the write, as we read it back
    unmapped: tuple[str, ...] = field(default_factory=tuple)


class CalendarProvider(Protocol):
    """One user's calendar at one provider. Blocking client libraries are run in threads by the adapter."""

    # Whether upsert honours `if_match`: the engine then writes a CRM change straight away, without first
    # reading the provider's event to merge with, and reads it only when the write is refused.
    conditional_writes: bool

    async def writable_calendars(self) -> list[str]: ...

    async def list_changes(self, cursor: str | None, window_days: int, page_cap: int,
                           page_token: str | None = None) -> ChangePage:
        """cursor None: a full list of the window (the first sync or a resync); else changes since cursor."""

    async def upsert(self, crm_record_id: str, event: CanonicalEvent, provider_id: str | None, *,
                     notify: bool = False, if_match: str | None = None) -> WriteResult:
        """Create or update the event for this CRM record; the same record never yields two events.
        `notify`: the attendees may be mailed (a participant list a CRM user changed, and the org allows
        it); otherwise the write mails nobody. `if_match` (only where conditional_writes): update
        `provider_id` only while its etag is this one, else raise ChangedMeanwhile."""

    async def upsert_many(self, items: list[tuple[str, CanonicalEvent, str | None]]) -> list[WriteResult | Exception]:
        """The same in provider batches (Google batch 50, Graph $batch 20); a result per item, in order.
        Never notifies: bulk writes are a sync's own (first syncs, resyncs)."""

    async def delete(self, provider_id: str) -> None:
        """Delete; an event already gone is not an error."""

    async def occurrence_id(self, series_id: str, original_start: EventTime) -> str | None:
        """The id of the series' occurrence (or exception) that started at `original_start` in the series,
        None when the series has none there: where an exception is written, or a cancelled date deleted."""

    async def find_by_crm_id(self, crm_record_id: str) -> ProviderEvent | None:
        """The event we wrote for this record earlier, found by our extended property."""

    async def watch(self, address: str, secret: str) -> Channel: ...

    async def unwatch(self, channel: Channel) -> None: ...
