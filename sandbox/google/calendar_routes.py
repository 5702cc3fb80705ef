"""Calendar v3 over HTTP, under /calendar/v3/, in the shapes of the real API
(https://developers.google.com/calendar/api/v3/reference).

The hot path is kept lean: handlers are plain Starlette routes (no per-call dependency solving) and
`async def` (they do no I/O, so no thread hop), and results are serialised with plain `json` into a
`Response`, skipping FastAPI's encoder.
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

PREFIX = "/calendar/v3"
JSON_TYPE = "application/json; charset=UTF-8"
CALENDAR_LIST_PAGE = 100
CALENDAR_LIST_MAX_PAGE = 250


def json_response(body, status: int = 200) -> Response:
    return Response(json.dumps(body).encode(), status, media_type=JSON_TYPE)


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
    if b"send" not in request.scope["query_string"]:  # most calls: skip parsing the query string
        return None
    value = request.query_params.get("sendUpdates")
    if value is None and "sendNotifications" in request.query_params:
        value = "all" if request.query_params["sendNotifications"] == "true" else "none"
    return value


def router(sandbox, store: CalendarStore, channels: ChannelRegistry) -> APIRouter:
    api = APIRouter(tags=["google calendar"])
    base_url = sandbox.config.http_base_url

    def route(method: str, path: str):
        """A plain Starlette route: no dependency solving per call, and the same path template for the
        fault middleware's counters and rules."""
        def register(handler):
            api.add_route(PREFIX + path, handler, methods=[method], include_in_schema=False)
            return handler
        return register

    # Registration order is matching order: event writes and reads, the hot path, come first.
    def entry_for(request: Request, write: bool = False):
        account = google_account(sandbox, request)
        return account, store.entry(account, request.path_params["calendarId"], write)

    @route("POST", "/calendars/{calendarId}/events")
    async def insert_event(request: Request):
        account, entry = entry_for(request, write=True)
        body = await json_body(request)
        store.record_send_updates(account, "events.insert", entry.calendar, body.get("id"), send_updates_param(request))
        resource = store.insert_event(entry, account, body)
        channels.notify(entry.calendar.id.lower())
        return json_response(resource)

    @route("GET", "/calendars/{calendarId}/events")
    async def list_events(request: Request):
        _, entry = entry_for(request)
        with store.lock:
            return json_response(list_page(entry, parse_query(request.query_params, entry.calendar)))

    @route("POST", "/calendars/{calendarId}/events/watch")
    async def watch_events(request: Request):
        account, entry = entry_for(request)
        calendar_id = quote(request.path_params["calendarId"], safe="@")
        resource_uri = f"{base_url}{PREFIX}/calendars/{calendar_id}/events?alt=json"
        channel = channels.watch(account.id, entry.calendar.id.lower(), entry.calendar.resource_id, resource_uri,
                                 await json_body(request))
        return json_response(channel.to_json())

    @route("GET", "/calendars/{calendarId}/events/{eventId}")
    async def get_event(request: Request):
        _, entry = entry_for(request)
        return json_response(store.get_event(entry.calendar, request.path_params["eventId"]).resource)

    @route("GET", "/calendars/{calendarId}/events/{eventId}/instances")
    async def event_instances(request: Request):
        _, entry = entry_for(request)
        with store.lock:
            series = store.get_event(entry.calendar, request.path_params["eventId"])
            return json_response(list_instances(entry, series, parse_query(request.query_params, entry.calendar)))

    async def write_event(request: Request, patch: bool):
        account, entry = entry_for(request, write=True)
        event_id = request.path_params["eventId"]
        body = await json_body(request)
        method = "events.patch" if patch else "events.update"
        store.record_send_updates(account, method, entry.calendar, event_id, send_updates_param(request))
        resource = store.write_event(entry, account, event_id, body, request.headers.get("if-match"), patch)
        channels.notify(entry.calendar.id.lower())
        return json_response(resource)

    @route("PATCH", "/calendars/{calendarId}/events/{eventId}")
    async def patch_event(request: Request):
        return await write_event(request, patch=True)

    @route("PUT", "/calendars/{calendarId}/events/{eventId}")
    async def update_event(request: Request):
        return await write_event(request, patch=False)

    @route("DELETE", "/calendars/{calendarId}/events/{eventId}")
    async def delete_event(request: Request):
        account, entry = entry_for(request, write=True)
        event_id = request.path_params["eventId"]
        store.record_send_updates(account, "events.delete", entry.calendar, event_id, send_updates_param(request))
        store.delete_event(entry, event_id, request.headers.get("if-match"))
        channels.notify(entry.calendar.id.lower())
        return Response(status_code=204)

    @route("GET", "/users/me/calendarList")
    async def list_calendars(request: Request):
        params = request.query_params
        account = google_account(sandbox, request)
        least = params.get("minAccessRole")
        if least is not None and least not in ROLES[1:]:
            raise invalid("Invalid value for: minAccessRole", "minAccessRole")
        entries = [e for e in store.calendar_list(account)
                   if least is None or ROLES.index(e.access_role) >= ROLES.index(least)]
        size = min(int(params.get("maxResults", CALENDAR_LIST_PAGE)), CALENDAR_LIST_MAX_PAGE)
        offset = int(params.get("pageToken", "0") or 0)
        body = {"kind": "calendar#calendarList", "etag": '"sandbox"',
                "items": [calendar_list_entry(e) for e in entries[offset:offset + size]]}
        if offset + size < len(entries):
            body["nextPageToken"] = str(offset + size)
        return json_response(body)

    @route("GET", "/users/me/calendarList/{calendarId}")
    async def get_calendar_list_entry(request: Request):
        return json_response(calendar_list_entry(entry_for(request)[1]))

    @route("GET", "/calendars/{calendarId}")
    async def get_calendar(request: Request):
        return json_response(calendar_resource(entry_for(request)[1]))

    @route("POST", "/channels/stop")
    async def stop_channel(request: Request):
        account = google_account(sandbox, request)
        channels.stop(account.id, await json_body(request))
        return Response(status_code=204)

    async def not_served(request: Request):
        raise google_error(404, "notFound", "Not Found")

    api.add_route(PREFIX + "/{unknown:path}", not_served, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
    return api
