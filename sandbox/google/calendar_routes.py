"""Calendar v3 over HTTP, under /calendar/v3/, in the shapes of the real API
(https://developers.google.com/calendar/api/v3/reference).

Handlers are `async def` on purpose: they do no I/O, so running them on the event loop avoids a thread
hop per call; results are serialised with plain `json` into a `Response`, skipping FastAPI's encoder.
"""
from __future__ import annotations

import json
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from sandbox.errors import google_error
from sandbox.google.auth import google_account
from sandbox.google.calendar_events import invalid
from sandbox.google.calendar_query import list_instances, list_page, parse_query
from sandbox.google.calendar_store import ROLES, CalendarStore, ListEntry
from sandbox.google.channels import ChannelRegistry

JSON_TYPE = "application/json; charset=UTF-8"
CALENDAR_LIST_PAGE = 100
CALENDAR_LIST_MAX_PAGE = 250


def json_response(body, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, media_type=JSON_TYPE)


async def json_body(request: Request):
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise google_error(400, "parseError", "Parse Error")
    return body


def calendar_list_entry(entry: ListEntry) -> dict:
    calendar = entry.calendar
    body = {
        "kind": "calendar#calendarListEntry",
        "etag": f'"{calendar.generation}"',
        "id": calendar.id,
        "summary": calendar.summary,
        "description": calendar.description,
        "timeZone": calendar.time_zone,
        "colorId": "14",
        "backgroundColor": "#9fe1e7",
        "foregroundColor": "#000000",
        "selected": True,
        "accessRole": entry.access_role,
        "defaultReminders": [{"method": "popup", "minutes": 30}] if entry.writable else [],
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    }
    if entry.primary:
        body["primary"] = True
    return body


def calendar_resource(entry: ListEntry) -> dict:
    calendar = entry.calendar
    return {
        "kind": "calendar#calendar",
        "etag": f'"{calendar.generation}"',
        "id": calendar.id,
        "summary": calendar.summary,
        "description": calendar.description,
        "timeZone": calendar.time_zone,
        "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    }


def send_updates_param(request: Request) -> str | None:
    """sendUpdates, or the deprecated sendNotifications it replaced (true = all, false = none)."""
    value = request.query_params.get("sendUpdates")
    if value is None and "sendNotifications" in request.query_params:
        value = "all" if request.query_params["sendNotifications"] == "true" else "none"
    return value


def router(sandbox, store: CalendarStore, channels: ChannelRegistry) -> APIRouter:
    api = APIRouter(prefix="/calendar/v3", tags=["google calendar"])
    base_url = sandbox.config.http_base_url

    def entry_for(request: Request, calendar_id: str, write: bool = False):
        account = google_account(sandbox, request)
        return account, store.entry(account, calendar_id, write)

    @api.get("/users/me/calendarList")
    async def list_calendars(request: Request):
        params = request.query_params
        account = google_account(sandbox, request)
        least = params.get("minAccessRole")
        if least is not None and least not in ROLES[1:]:
            raise invalid("Invalid value for: minAccessRole", "minAccessRole")
        entries = [e for e in store.calendar_list(account) if least is None or ROLES.index(e.access_role) >= ROLES.index(least)]
        size = min(int(params.get("maxResults", CALENDAR_LIST_PAGE)), CALENDAR_LIST_MAX_PAGE)
        offset = int(params.get("pageToken", "0") or 0)
        body = {"kind": "calendar#calendarList", "etag": '"sandbox"',
                "items": [calendar_list_entry(e) for e in entries[offset:offset + size]]}
        if offset + size < len(entries):
            body["nextPageToken"] = str(offset + size)
        return json_response(body)

    @api.get("/users/me/calendarList/{calendarId}")
    async def get_calendar_list_entry(calendarId: str, request: Request):
        return json_response(calendar_list_entry(entry_for(request, calendarId)[1]))

    @api.get("/calendars/{calendarId}")
    async def get_calendar(calendarId: str, request: Request):
        return json_response(calendar_resource(entry_for(request, calendarId)[1]))

    @api.get("/calendars/{calendarId}/events")
    async def list_events(calendarId: str, request: Request):
        _, entry = entry_for(request, calendarId)
        with store.lock:
            return json_response(list_page(entry, parse_query(request.query_params, entry.calendar)))

    @api.post("/calendars/{calendarId}/events")
    async def insert_event(calendarId: str, request: Request):
        account, entry = entry_for(request, calendarId, write=True)
        body = await json_body(request)
        store.record_send_updates(account, "events.insert", entry.calendar, body.get("id"), send_updates_param(request))
        resource = store.insert_event(entry, account, body)
        channels.notify(entry.calendar.id.lower())
        return json_response(resource)

    @api.post("/calendars/{calendarId}/events/watch")
    async def watch_events(calendarId: str, request: Request):
        account, entry = entry_for(request, calendarId)
        resource_uri = f"{base_url}/calendar/v3/calendars/{quote(calendarId, safe='@')}/events?alt=json"
        channel = channels.watch(account.id, entry.calendar.id.lower(), entry.calendar.resource_id, resource_uri,
                                 await json_body(request))
        return json_response(channel.to_json())

    @api.get("/calendars/{calendarId}/events/{eventId}")
    async def get_event(calendarId: str, eventId: str, request: Request):
        _, entry = entry_for(request, calendarId)
        return json_response(store.get_event(entry.calendar, eventId).resource)

    @api.get("/calendars/{calendarId}/events/{eventId}/instances")
    async def event_instances(calendarId: str, eventId: str, request: Request):
        _, entry = entry_for(request, calendarId)
        with store.lock:
            series = store.get_event(entry.calendar, eventId)
            return json_response(list_instances(entry, series, parse_query(request.query_params, entry.calendar)))

    async def write_event(calendar_id: str, event_id: str, request: Request, patch: bool):
        account, entry = entry_for(request, calendar_id, write=True)
        body = await json_body(request)
        method = "events.patch" if patch else "events.update"
        store.record_send_updates(account, method, entry.calendar, event_id, send_updates_param(request))
        resource = store.write_event(entry, account, event_id, body, request.headers.get("if-match"), patch)
        channels.notify(entry.calendar.id.lower())
        return json_response(resource)

    @api.patch("/calendars/{calendarId}/events/{eventId}")
    async def patch_event(calendarId: str, eventId: str, request: Request):
        return await write_event(calendarId, eventId, request, patch=True)

    @api.put("/calendars/{calendarId}/events/{eventId}")
    async def update_event(calendarId: str, eventId: str, request: Request):
        return await write_event(calendarId, eventId, request, patch=False)

    @api.delete("/calendars/{calendarId}/events/{eventId}")
    async def delete_event(calendarId: str, eventId: str, request: Request):
        account, entry = entry_for(request, calendarId, write=True)
        store.record_send_updates(account, "events.delete", entry.calendar, eventId, send_updates_param(request))
        store.delete_event(entry, eventId, request.headers.get("if-match"))
        channels.notify(entry.calendar.id.lower())
        return Response(status_code=204)

    @api.post("/channels/stop")
    async def stop_channel(request: Request):
        account = google_account(sandbox, request)
        channels.stop(account.id, await json_body(request))
        return Response(status_code=204)

    @api.api_route("/{unknown:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def not_served(unknown: str):
        raise google_error(404, "notFound", "Not Found")

    return api
