"""`/v1.0/users/{id}/calendars/{calendar id}/events` and `.../calendarView/delta`: one calendar's events.

Graph addresses a chosen calendar's events under its id (https://learn.microsoft.com/graph/api/calendar-post-events,
https://learn.microsoft.com/graph/api/event-delta: `/users/{id}/calendars/{id}/calendarView/delta`); the
mailbox-wide `/users/{id}/events` stands for the default calendar. The sandbox's mailboxes have the two
calendars of graph_calendars: the default one, whose events these routes serve by passing the call on to
the mailbox routes (through the whole app, as $batch parts go), and a holiday calendar the user cannot
edit: it lists no events, and a create there answers 403 ErrorAccessDenied, as Outlook does for a
calendar without write access. An unknown calendar id answers 404 ErrorItemNotFound.
"""
from __future__ import annotations

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.errors import graph_error
from sandbox.microsoft.graph_calendars import calendars
from sandbox.microsoft.graph_common import base_url
from sandbox.microsoft.graph_users import mailbox_owner

_PASSED_HEADERS = ("authorization", "prefer", "content-type")


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0/users/{user_id}/calendars/{calendar_id}", tags=["graph calendar events"])

    def calendar_of(request: Request, user_id: str, calendar_id: str) -> dict:
        _, account = mailbox_owner(sandbox, request, user_id)
        found = next((c for c in calendars(account) if c["id"] == calendar_id), None)
        if found is None:
            raise graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return found

    async def pass_on(request: Request, user_id: str, rest: str) -> Response:
        """The same call on the mailbox route that serves the default calendar."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASSED_HEADERS}
        transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=str(request.base_url)) as client:
            answer = await client.request(request.method, f"/v1.0/users/{user_id}/{rest}",
                                          params=request.query_params, headers=headers, content=await request.body())
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "preference-applied",
                                                                          "retry-after", "location")}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    def nothing(request: Request, delta: bool) -> JSONResponse:
        answer: dict = {"@odata.context": f"{base_url(request)}/v1.0/$metadata#Collection(event)", "value": []}
        if delta:
            answer["@odata.deltaLink"] = f"{base_url(request)}{request.url.path}?$deltatoken=empty"
        return JSONResponse(answer)

    @api.post("/events")
    async def create_event(request: Request, user_id: str, calendar_id: str) -> Response:
        calendar = calendar_of(request, user_id, calendar_id)
        if not calendar["canEdit"]:
            raise graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return await pass_on(request, user_id, "events")

    @api.get("/events")
    async def list_events(request: Request, user_id: str, calendar_id: str) -> Response:
        if not calendar_of(request, user_id, calendar_id)["isDefaultCalendar"]:
            return nothing(request, delta=False)
        return await pass_on(request, user_id, "events")

    @api.get("/calendarView/delta")
    async def calendar_view_delta(request: Request, user_id: str, calendar_id: str) -> Response:
        if not calendar_of(request, user_id, calendar_id)["isDefaultCalendar"]:
            return nothing(request, delta=True)
        return await pass_on(request, user_id, "calendarView/delta")

    return api
