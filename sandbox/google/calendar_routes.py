"""Calendar v3 over HTTP, under /calendar/v3/, in the shapes of the real API
(https://developers.google.com/calendar/api/v3/reference).

The hot path is kept lean: handlers are plain Starlette routes (no per-call dependency solving) and
`async def` (they do no I/O, so no thread hop), and bodies are parsed and results serialised with orjson
straight into a `Response`, skipping FastAPI's encoder (the stdlib encoder was a tenth of a batched
insert's server CPU). orjson is as strict as Google on input: NaN, Infinity and lone surrogates are
parse errors.
"""
from __future__ import annotations

import json
from functools import lru_cache
from urllib.parse import parse_qs, quote

import orjson
from fastapi import APIRouter, Request, Response

from sandbox.asgi_headers import header
from sandbox.errors import google_error
from sandbox.google.auth import google_account
from sandbox.google.calendar_list import entry_fields, parse_list_query
from sandbox.google.calendar_list import list_page as list_calendar_page
from sandbox.google.calendar_query import list_instances, list_page, parse_query
from sandbox.google.calendar_store import CalendarStore, ListEntry
from sandbox.google.channels import ChannelRegistry

PREFIX = "/calendar/v3"
JSON_TYPE = "application/json; charset=UTF-8"


_JSON_TYPE = JSON_TYPE.encode()


class JsonResponse(Response):
    """A JSON answer with its raw headers written out at once: Starlette's Response works them out from
    its arguments on every call, a few percent of a batched insert."""

    media_type = JSON_TYPE

    def __init__(self, content: bytes, status: int = 200):
        self.status_code, self.body, self.background = status, content, None
        self.raw_headers = [(b"content-length", b"%d" % len(content)), (b"content-type", _JSON_TYPE)]


def json_response(body, status: int = 200) -> Response:
    try:
        content = orjson.dumps(body)
    except TypeError:  # an integer past 64 bits that a client stored in a free-form field
        content = json.dumps(body).encode()
    return JsonResponse(content, status)


def resource_response(resource: dict) -> Response:
    """A written resource with its etag also as the `ETag` header, as Google's answers carry it (the batch
    guide's example response: https://developers.google.com/workspace/calendar/api/guides/batch)."""
    response = json_response(resource)
    response.raw_headers.append((b"etag", resource["etag"].encode()))
    return response


async def json_body(request: Request):
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except ValueError:  # orjson.JSONDecodeError is one
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
    if entry.state is not None:
        body.update(entry_fields(entry.state))
    if entry.primary:
        body["primary"] = True
    return body


def conditional_get(request: Request, resource: dict) -> Response:
    """A read that honours `If-None-Match`: 304 Not Modified with no body when the client holds the current
    etag, the resource otherwise ("conditional retrieval",
    https://developers.google.com/calendar/api/guides/version-resources). The etag also goes out as the
    `ETag` header, as Google's JSON APIs send it, so an HTTP cache can revalidate by itself."""
    etag = resource["etag"]
    held = request.headers.get("if-none-match")
    if held is not None and etag in (tag.strip() for tag in held.split(",")):
        return Response(status_code=304, headers={"ETag": etag})
    response = resource_response(resource)
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate, no-transform"
    return response


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
    query = request.scope["query_string"]
    if b"send" not in query:  # most calls: skip parsing the query string
        return None
    return _send_updates(query)


@lru_cache(maxsize=64)
def _send_updates(query: bytes) -> str | None:
    """By query string: a client sends the same few again and again (each insert of a batch, say)."""
    params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    value = params["sendUpdates"][-1] if "sendUpdates" in params else None  # the last, as query_params gives it
    if value is None and "sendNotifications" in params:
        value = "all" if params["sendNotifications"][-1] == "true" else "none"
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
        return resource_response(resource)

    @route("GET", "/calendars/{calendarId}/events")
    async def list_events(request: Request):
        _, entry = entry_for(request)
        with store.lock:
            query = parse_query(request.query_params, entry.calendar)
            return json_response(list_page(entry, query, empty_first_page=store.empty_first_page))

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
        return conditional_get(request, store.get_event(entry.calendar, request.path_params["eventId"]).resource)

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
        resource = store.write_event(entry, account, event_id, body, header(request.scope, b"if-match"), patch)
        channels.notify(entry.calendar.id.lower())
        return resource_response(resource)

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
        store.delete_event(entry, event_id, header(request.scope, b"if-match"))
        channels.notify(entry.calendar.id.lower())
        return Response(status_code=204)

    @route("GET", "/users/me/calendarList")
    async def list_calendars(request: Request):
        account = google_account(sandbox, request)
        with store.lock:
            account_list = store.account_list(account)
            query = parse_list_query(request.query_params, account_list)
            return json_response(list_calendar_page(
                account_list, query, lambda key: calendar_list_entry(store.list_entry(account, key))))

    @route("POST", "/users/me/calendarList")
    async def insert_calendar_list_entry(request: Request):
        body = await json_body(request)
        if not body.get("id"):
            raise google_error(400, "required", "Required", location="id")
        entry = store.restore_entry(google_account(sandbox, request), body["id"], body)
        return json_response(calendar_list_entry(entry))

    @route("GET", "/users/me/calendarList/{calendarId}")
    async def get_calendar_list_entry(request: Request):
        return conditional_get(request, calendar_list_entry(entry_for(request)[1]))

    async def write_calendar_list_entry(request: Request, patch: bool):
        account = google_account(sandbox, request)
        body = await json_body(request)
        entry = store.write_entry(account, request.path_params["calendarId"], body, patch)
        return json_response(calendar_list_entry(entry))

    @route("PATCH", "/users/me/calendarList/{calendarId}")
    async def patch_calendar_list_entry(request: Request):
        return await write_calendar_list_entry(request, patch=True)

    @route("PUT", "/users/me/calendarList/{calendarId}")
    async def update_calendar_list_entry(request: Request):
        return await write_calendar_list_entry(request, patch=False)

    @route("DELETE", "/users/me/calendarList/{calendarId}")
    async def delete_calendar_list_entry(request: Request):
        store.remove_entry(google_account(sandbox, request), request.path_params["calendarId"])
        return Response(status_code=204)

    @route("POST", "/calendars")
    async def insert_calendar(request: Request):
        entry = store.create_calendar(google_account(sandbox, request), await json_body(request))
        return json_response(calendar_resource(entry))

    @route("GET", "/calendars/{calendarId}")
    async def get_calendar(request: Request):
        return conditional_get(request, calendar_resource(entry_for(request)[1]))

    @route("DELETE", "/calendars/{calendarId}")
    async def delete_calendar(request: Request):
        store.delete_calendar(google_account(sandbox, request), request.path_params["calendarId"])
        return Response(status_code=204)

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
