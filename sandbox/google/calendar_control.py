"""`/_sandbox/google/`: what tests need to arrange and observe around Calendar, beyond the real API.

Changing an event "as the user in Google's UI" needs nothing here: it is the real API with the account's
token. What is here: more calendars (including read-only ones), seeding events into calendars the account
cannot write, forcing sync tokens to expire, the sendUpdates each call carried, and channel deliveries.
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from sandbox.google.calendar_routes import calendar_list_entry, json_body
from sandbox.google.calendar_store import CalendarStore, ListEntry
from sandbox.google.channels import ChannelRegistry
from sandbox.state import Account


class NewCalendar(BaseModel):
    summary: str = "Sandbox calendar"
    access_role: Literal["freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer", "owner"] = "owner"
    time_zone: str = "UTC"
    id: str | None = Field(None, description="share an existing calendar (by id) instead of creating one")


class CalendarSettings(BaseModel):
    empty_first_page: bool = False


def router(sandbox, store: CalendarStore, channels: ChannelRegistry) -> APIRouter:
    api = APIRouter(prefix="/_sandbox/google", tags=["sandbox control"])

    def google_account(account_id: str) -> Account:
        account = sandbox.state.accounts.get(account_id)
        if account is None or account.provider != "google":
            raise HTTPException(404, f"no sandbox Google account {account_id}")
        return account

    @api.post("/accounts/{account_id}/calendars", status_code=201)
    def add_calendar(account_id: str, body: NewCalendar) -> dict:
        """Add a calendar to the account's list; `reader` ones let code check that it refuses to write."""
        entry = store.add_calendar(google_account(account_id), body.summary, body.access_role, body.time_zone, body.id)
        return calendar_list_entry(entry)

    @api.post("/accounts/{account_id}/calendars/{calendar_id}/events", status_code=201)
    async def seed_event(account_id: str, calendar_id: str, request: Request) -> dict:
        """Insert an event as the calendar's owner would, whatever the account's own access."""
        account = google_account(account_id)
        entry = store.entry(account, calendar_id)
        owner_view = ListEntry(entry.calendar, "owner", entry.primary)
        resource = store.insert_event(owner_view, account, await json_body(request))
        channels.notify(entry.calendar.id.lower())
        return resource

    @api.post("/accounts/{account_id}/invalidate-sync-tokens")
    def invalidate_sync_tokens(account_id: str) -> dict:
        """Every sync token of the account's calendars answers 410 fullSyncRequired from now on."""
        return {"calendars": store.invalidate_sync_tokens(google_account(account_id))}

    @api.get("/accounts/{account_id}/sent-updates")
    def sent_updates(account_id: str) -> list[dict]:
        """The sendUpdates value of each event write, oldest first (None when the call gave none)."""
        google_account(account_id)
        with store.lock:
            return list(store.sent_updates.get(account_id, ()))

    @api.patch("/settings")
    def settings(body: CalendarSettings) -> dict:
        """`empty_first_page`: every events.list listing starts with an empty page that carries a
        nextPageToken, which Google may send; /_sandbox/reset turns it off."""
        store.empty_first_page = body.empty_first_page
        return body.model_dump()

    @api.get("/channels")
    def list_channels() -> list[dict]:
        """Every channel opened since the last reset, its state and each delivery's outcome."""
        return channels.describe()

    return api
