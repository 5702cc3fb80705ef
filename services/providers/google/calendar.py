"""Google Calendar v3 for one user's calendar: the CalendarProvider the sync engine drives.

What makes it safe to repeat anything:
- an event we create gets an id derived from (org, user, CRM record) (rules.google_event_id), so a
  retried or repeated insert answers 409 instead of creating a second event. A 409 means the event is
  there, live or deleted (ids stay taken after a delete: re-enabling after deleting the configuration),
  so it is patched back to `confirmed` with our fields: one event, same id, always;
- the event carries our record id in extendedProperties.private, so a lost mapping is found again;
- every write says sendUpdates=none: a sync never mails attendees; only a write the engine marks `notify`
  (a participant list a CRM user changed, in an org that allows it) says sendUpdates=all.
Throttling and 5xx are retried with backoff in client.py; in a batch only the calls that failed are
sent again.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import parse_qs, urlencode

from services.calendar_sync.mapping import (
    InvalidEvent,
    canonical_to_google,
    fit_google,
    google_original_start,
    google_to_canonical,
)
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import (
    ChangedMeanwhile,
    ChangePage,
    Channel,
    NotWritable,
    ProviderEvent,
    WriteResult,
)
from services.calendar_sync.rules import google_event_id
from services.common.logging import get_logger
from services.common.ratelimit import TokenBucket, provider_bucket
from services.common.retry import TransientError
from services.common.settings import Settings
from services.common.tokens import Grant
from services.providers.google.client import GoogleApi, GoogleApiError, credentials_from_grant

log = get_logger(__name__)

RECORD_PROPERTY = "crmsync_record_id"
ORG_PROPERTY = "crmsync_org"
WRITABLE_ROLES = frozenset({"owner", "writer"})
MAX_PAGE = 2500  # events.list serves at most this many per page
NO_MAILS = {"sendUpdates": "none"}

# Calendar time zones by (account, calendar): a floating dateTime (no timeZone) is in the calendar's zone,
# and reading it the same way on every path keeps fingerprints equal (echo detection depends on it).
_zones: dict[tuple[str, str], str] = {}


@dataclass
class _Write:
    """One upsert on its way: the call it needs next, and how it ended.

    Steps: "patch_linked" (the provider id the engine knows) -> on 404/410 "insert" under our id ->
    on 409 (ours exists, maybe deleted) "patch_ours". An upsert with no known id starts at "insert".
    A 409 may also mean that another event holds the iCalUID we asked for (our id is then free, and
    the patch answers 404): the event is inserted once more without it.
    """

    record_id: str
    event: CanonicalEvent
    body: dict
    linked_id: str | None
    our_id: str
    step: str = "insert"
    send_updates: str = "none"  # "all" only for a participant change the org lets notify
    if_match: str | None = None  # the linked event's etag: patched only while Google still holds that version
    attempts: int = 0
    outcome: WriteResult | BaseException | None = None

    def __post_init__(self) -> None:
        if self.linked_id is not None:
            self.step = "patch_linked"

    def request(self, calendar_id: str):
        if self.step == "insert":
            body = {**self.body, "id": self.our_id}
            return lambda service: service.events().insert(calendarId=calendar_id, body=body,
                                                           sendUpdates=self.send_updates)
        event_id = self.linked_id if self.step == "patch_linked" else self.our_id
        body = {k: v for k, v in self.body.items() if k != "iCalUID"}  # fixed at creation
        if_match = self.if_match if self.step == "patch_linked" else None

        def patch(service):
            request = service.events().patch(calendarId=calendar_id, eventId=event_id, body=body,
                                             sendUpdates=self.send_updates)
            if if_match:  # https://developers.google.com/calendar/api/guides/version-resources: 412 if changed
                request.headers["If-Match"] = if_match
            return request

        return patch

    def next_step(self, error: GoogleApiError) -> bool:
        """Move on after an answer that says where the event is; False when there is no next step."""
        if self.step == "patch_linked" and error.status in (404, 410):
            self.step = "insert"
        elif self.step == "insert" and error.status == 409:
            self.step = "patch_ours"
        elif self.step == "patch_ours" and error.status == 404 and "iCalUID" in self.body:
            self.body = {k: v for k, v in self.body.items() if k != "iCalUID"}
            self.step = "insert"
        else:
            return False
        return True


class GoogleCalendarProvider:
    """One user's Google calendar (`calendar_id`, "primary" by default) for the CRM user org_id/user_id.

    `settings` gives the endpoints and OAuth client; `grant` the user's refresh token; `bucket` the
    user's share of the Calendar quota (open() builds it from Redis and the settings).
    """

    conditional_writes = True  # events.patch honours If-Match (412 conditionNotMet)

    def __init__(self, settings: Settings, grant: Grant, org_id: str, user_id: str, bucket: TokenBucket,
                 calendar_id: str = "primary"):
        self.org_id, self.user_id = org_id, user_id
        self.calendar_id = calendar_id
        self._zone_key = (grant.account_email.lower(), calendar_id)
        self.api = GoogleApi(settings, credentials_from_grant(grant, settings), "calendar", "v3", bucket)

    @classmethod
    def open(cls, settings: Settings, redis, grant: Grant, org_id: str, user_id: str,
             calendar_id: str = "primary") -> GoogleCalendarProvider:
        """The provider with the user's shared token bucket (cheap: credentials are kept per grant)."""
        bucket = provider_bucket(redis, settings, "google_calendar", org_id, user_id)
        return cls(settings, grant, org_id, user_id, bucket, calendar_id)

    # --- calendars ------------------------------------------------------------------------------
    async def writable_calendars(self) -> list[str]:
        """Ids of the calendars the user owns or may write (the primary one under its address)."""
        ids, page_token = [], None
        while True:
            page = await self.api.call(lambda s, t=page_token: s.calendarList().list(
                minAccessRole="writer", maxResults=250, pageToken=t))
            ids += [c["id"] for c in page.get("items", []) if c.get("accessRole") in WRITABLE_ROLES]
            page_token = page.get("nextPageToken")
            if not page_token:
                return ids

    # --- reading ----------------------------------------------------------------------------------
    async def list_changes(self, cursor: str | None, window_days: int, page_cap: int,
                           page_token: str | None = None) -> ChangePage:
        """Up to page_cap events, following Google's pages; next_cursor continues, final_cursor is the
        nextSyncToken after the last page.

        Without a cursor: every live event of the window (series as their master, with recurrence).
        A full listing's pages must all be asked with the same timeMin, so its continuation carries it.
        """
        if cursor is None:
            time_min, google_token = _read_continuation(page_token) if page_token else (_window_start(window_days), None)
            query = {"timeMin": time_min, "showDeleted": False, "singleEvents": False}
        else:
            time_min, google_token = None, page_token
            query = {"syncToken": cursor}
        events: list[ProviderEvent] = []
        while True:
            request = dict(query, maxResults=min(page_cap - len(events), MAX_PAGE), pageToken=google_token)
            page = await self._not_writable_if_missing(self.api.call(
                lambda s, r=request: s.events().list(calendarId=self.calendar_id, **r)))
            events += self._provider_events(page)
            google_token = page.get("nextPageToken")
            if not google_token:
                return ChangePage(events, None, page.get("nextSyncToken"))
            if len(events) >= page_cap:
                following = _continuation(time_min, google_token) if time_min else google_token
                return ChangePage(events, following)

    async def find_by_crm_id(self, crm_record_id: str) -> ProviderEvent | None:
        """The live event we wrote for this record, by our private extended properties."""
        page = await self.api.call(lambda s: s.events().list(
            calendarId=self.calendar_id, maxResults=10, showDeleted=False,
            privateExtendedProperty=[f"{RECORD_PROPERTY}={crm_record_id}", f"{ORG_PROPERTY}={self.org_id}"]))
        found = self._provider_events(page)
        return found[0] if found else None

    async def occurrence_id(self, series_id: str, original_start: EventTime) -> str | None:
        """events.instances with `originalStart` (https://developers.google.com/calendar/api/v3/reference/events/instances);
        the answer is matched on originalStartTime too, so a wider answer cannot give a wrong occurrence."""
        try:
            page = await self.api.call(lambda s: s.events().instances(
                calendarId=self.calendar_id, eventId=series_id, originalStart=original_start.rfc3339(),
                maxResults=MAX_PAGE))
        except GoogleApiError as error:
            if error.status in (404, 410):
                return None
            _raise_refusal(error)
        for item in page.get("items", []):
            try:
                found = google_original_start(item, page.get("timeZone"))
            except InvalidEvent:
                continue
            if found is not None and found.instant() == original_start.instant():
                return item["id"]
        return None

    # --- writing ----------------------------------------------------------------------------------
    async def upsert(self, crm_record_id: str, event: CanonicalEvent, provider_id: str | None, *,
                     notify: bool = False, if_match: str | None = None) -> WriteResult:
        write = self._write(crm_record_id, event, provider_id, notify)
        write.if_match = if_match if provider_id else None
        (result,) = await self._upsert([write])
        if isinstance(result, GoogleApiError) and result.status == 412:
            raise ChangedMeanwhile(f"event {provider_id} changed at Google since etag {if_match}") from result
        if isinstance(result, BaseException):
            raise result
        return result

    async def upsert_many(self, items: list[tuple[str, CanonicalEvent, str | None]]) -> list[WriteResult | Exception]:
        """Create or update each record's event, in batches of 50; a result per item, in order.

        Each round sends every write still open: those answered 404/409 go on to their next call at
        once, those throttled or failed with a 5xx go again after a backoff, only they.
        """
        return await self._upsert([self._write(*item) for item in items])

    async def _upsert(self, writes: list[_Write]) -> list[WriteResult | Exception]:
        open_writes = writes
        while open_writes:
            answers = await self.api.call_each([w.request(self.calendar_id) for w in open_writes])
            again: list[_Write] = []
            retry_after: list[float] = []
            for write, answer in zip(open_writes, answers):
                if isinstance(answer, TransientError):
                    write.attempts += 1
                    if write.attempts >= self.api.retry.max_attempts:
                        write.outcome = answer
                        continue
                    again.append(write)
                    if answer.retry_after_s is not None:
                        retry_after.append(answer.retry_after_s)
                elif isinstance(answer, GoogleApiError):
                    if write.next_step(answer):
                        again.append(write)
                    else:
                        write.outcome = _refusal(answer)
                elif isinstance(answer, BaseException):
                    write.outcome = answer
                else:
                    write.outcome = await self._write_result(write.event, answer)
            throttled = max((w.attempts for w in again), default=0)
            if throttled:
                await asyncio.sleep(self.api.retry.delay(throttled, max(retry_after, default=None)))
            open_writes = again
        return [w.outcome for w in writes]  # type: ignore[misc]

    async def delete(self, provider_id: str) -> None:
        """Delete without mailing attendees; an event already deleted (410) or unknown (404) is fine."""
        try:
            await self.api.call(lambda s: s.events().delete(calendarId=self.calendar_id, eventId=provider_id,
                                                           **NO_MAILS))
        except GoogleApiError as error:
            if error.status not in (404, 410):
                _raise_refusal(error)

    # --- push channels ----------------------------------------------------------------------------
    async def watch(self, address: str, secret: str) -> Channel:
        """Open a channel on the calendar's events; Google posts to `address` with `secret` as its token."""
        channel_id = uuid.uuid4().hex
        answer = await self._not_writable_if_missing(self.api.call(lambda s: s.events().watch(
            calendarId=self.calendar_id,
            body={"id": channel_id, "type": "web_hook", "address": address, "token": secret})))
        expires_at = int(answer["expiration"]) / 1000 if answer.get("expiration") else 0.0
        return Channel(channel_id, answer["resourceId"], expires_at, secret)

    async def unwatch(self, channel: Channel) -> None:
        """Stop a channel; one Google no longer knows (expired, stopped before) is stopped already."""
        try:
            await self.api.call(lambda s: s.channels().stop(
                body={"id": channel.channel_id, "resourceId": channel.resource_id}))
        except GoogleApiError as error:
            if error.status != 404:
                raise

    # --- helpers ----------------------------------------------------------------------------------
    def _write(self, record_id: str, event: CanonicalEvent, provider_id: str | None, notify: bool = False) -> _Write:
        body = dict(canonical_to_google(event))
        body.pop("id", None)
        body["status"] = "confirmed"  # also brings back an event deleted at Google under our id
        private = {RECORD_PROPERTY: record_id, ORG_PROPERTY: self.org_id}
        extended = dict(body.get("extendedProperties") or {})
        extended["private"] = {**(extended.get("private") or {}), **private}
        body["extendedProperties"] = extended
        return _Write(record_id, event, body, provider_id, google_event_id(self.org_id, self.user_id, record_id),
                      send_updates="all" if notify else "none")

    async def _write_result(self, event: CanonicalEvent, resource: dict) -> WriteResult:
        """What Google holds now, read as a listing would read it; `unmapped`: what Google cannot hold."""
        zone = await self._calendar_zone() if _floating(resource) else None
        held = google_to_canonical(resource, zone).event
        return WriteResult(resource["id"], resource.get("etag"), held, fit_google(event).unmapped)

    def _provider_events(self, page: dict) -> list[ProviderEvent]:
        """A listing's events; one that cannot be read at all is logged and left out, never taken for
        a deletion (which would delete the CRM's copy)."""
        if page.get("timeZone"):
            _zones[self._zone_key] = page["timeZone"]
        events = []
        for item in page.get("items", []):
            try:
                events.append(self._provider_event(item, page.get("timeZone")))
            except InvalidEvent as error:
                log.warning("google event cannot be read: not synced", event_id=item.get("id"), reason=str(error))
        return events

    def _provider_event(self, item: dict, zone: str | None) -> ProviderEvent:
        private = (item.get("extendedProperties") or {}).get("private") or {}
        ours = private.get(ORG_PROPERTY) in (None, self.org_id)
        record_id = private.get(RECORD_PROPERTY) if ours else None
        mapped = google_to_canonical(item, zone)  # None for a cancelled (deleted) event
        return ProviderEvent(item["id"], mapped.event, record_id, item.get("etag"), item.get("updated"),
                             mapped.problems, series_id=item.get("recurringEventId"),
                             original_start=google_original_start(item, zone))

    async def _calendar_zone(self) -> str:
        zone = _zones.get(self._zone_key)
        if zone is None:
            answer = await self.api.call(lambda s: s.calendars().get(calendarId=self.calendar_id))
            zone = _zones[self._zone_key] = answer.get("timeZone") or "UTC"
        return zone

    async def _not_writable_if_missing(self, call):
        """A calendar that is gone or not shared with the user any more cannot be synced."""
        try:
            return await call
        except GoogleApiError as error:
            _raise_refusal(error)


def _refusal(error: GoogleApiError) -> Exception:
    """A 403 (no write access) or a calendar not found means the target calendar cannot be synced."""
    if error.status == 403 or (error.status == 404 and error.reason == "notFound"):
        return NotWritable(str(error))
    return error


def _raise_refusal(error: GoogleApiError) -> NoReturn:
    refusal = _refusal(error)
    if refusal is error:
        raise error
    raise refusal from error


def _floating(resource: dict) -> bool:
    """A dateTime without a timeZone: read in the calendar's zone."""
    return any(isinstance(resource.get(edge), dict) and resource[edge].get("dateTime")
               and not resource[edge].get("timeZone") for edge in ("start", "end"))


def _window_start(window_days: int) -> str:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=window_days)
    return start.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _continuation(time_min: str, google_token: str) -> str:
    return urlencode({"timeMin": time_min, "pageToken": google_token})


def _read_continuation(value: str) -> tuple[str, str]:
    fields = parse_qs(value)
    return fields["timeMin"][0], fields["pageToken"][0]
