"""`/v1.0/users/{id}/events` (and `/me/events`): create, read, list, update, delete; `/calendarView`.

- `transactionId` makes a create idempotent: a second POST with the same value answers the event the
  first one made (https://learn.microsoft.com/graph/api/resources/event, property transactionId).
- Foreign ids live in `singleValueExtendedProperties`, read with
  `$expand=singleValueExtendedProperties($filter=id eq '...')` and found with
  `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')`
  (https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get).
- Lists: 10 a page by default, `$top` up to 1000, `$skip` in `@odata.nextLink`
  (https://learn.microsoft.com/graph/api/user-list-events).
"""
from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from sandbox.errors import graph_error
from sandbox.microsoft import event_model, series
from sandbox.microsoft.event_store import EventStore
from sandbox.microsoft.graph_common import (
    applied_preferences,
    base_url,
    int_param,
    json_answer,
    json_object,
    preferred_time_zone,
    window,
)
from sandbox.microsoft.graph_users import find_user, mailbox_owner, select

EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX = 10, 1000
# $select narrows the properties, never what $expand asked for (OData v4: expanded navigation properties
# are returned whatever $select lists), so `$select=id&$expand=singleValueExtendedProperties(...)` reads
# ids and our properties only.
_ALWAYS_SELECTED = ("id", "@odata.etag", "singleValueExtendedProperties")
_QUOTED = r"'((?:[^']|'')*)'"
_EXPAND = re.compile(r"^singleValueExtendedProperties\(\$filter=(.+)\)$", re.IGNORECASE)
_ANY_FILTER = re.compile(
    rf"^singleValueExtendedProperties/any\((\w+):\s*\1/id\s+eq\s+{_QUOTED}\s+and\s+\1/value\s+eq\s+{_QUOTED}\)$",
    re.IGNORECASE,
)


def _unquote(value: str) -> str:
    return value.replace("''", "'")


def expanded_property_ids(expand: str | None) -> list[str]:
    """The extended property ids named by `$expand`; 400 for any other expansion."""
    if not expand:
        return []
    match = _EXPAND.match(expand.strip())
    if not match:
        raise graph_error(400, "BadRequest", f"Parsing OData Select and Expand failed: could not find a property named '{expand}'.")
    ids = re.findall(rf"id\s+eq\s+{_QUOTED}", match.group(1), re.IGNORECASE)
    if not ids:
        raise graph_error(400, "BadRequest", "Expand of singleValueExtendedProperties needs $filter=id eq '...'.")
    return [_unquote(i) for i in ids]


def extended_property_filter(filter_param: str | None):
    """A predicate over stored records for `$filter`; only the extended property Any(...) form exists here."""
    if not filter_param:
        return lambda record: True
    match = _ANY_FILTER.match(filter_param.strip())
    if not match:
        raise graph_error(400, "ErrorInvalidUrlQueryFilter", f"The sandbox does not emulate this $filter: {filter_param}")
    prop_id, value = _unquote(match.group(2)).lower(), _unquote(match.group(3))
    return lambda record: any(k.lower() == prop_id and v == value for k, v in record.get("_extended", {}).items())


def page_of(request: Request, items: list, top_default: int = EVENTS_PAGE_DEFAULT) -> tuple[list, str | None]:
    """One `$top`/`$skip` page of `items` and the nextLink to the rest, if any."""
    params = request.query_params
    top = int_param(params.get("$top"), "$top", top_default, EVENTS_PAGE_MAX)
    skip = int(params["$skip"]) if params.get("$skip", "").isdigit() else 0
    page = items[skip : skip + top]
    if skip + top >= len(items):
        return page, None
    query = dict(params)
    query.update({"$top": str(top), "$skip": str(skip + top)})
    return page, f"{base_url(request)}{request.url.path}?{urlencode(query, safe='$')}"


def router(sandbox, events: EventStore) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph events"])

    def entity(request: Request, user_id: str, record: dict, status: int = 200, instance=None) -> Response:
        """The event (or, given `instance`, the occurrence or exception of the series `record`) as read back."""
        expand_ids = expanded_property_ids(request.query_params.get("$expand"))
        tz_name = preferred_time_zone(request)
        if instance is None:
            body = event_model.render(record, tz_name=tz_name, expand_ids=expand_ids)
        else:
            body = series.render_instance(record, instance, tz_name=tz_name, expand_ids=expand_ids)
        body = select(body, request.query_params.get("$select"), always=_ALWAYS_SELECTED)
        context = {"@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{user_id}')/events/$entity"}
        return json_answer({**context, **body}, status, applied_preferences(request))

    async def create_event(request: Request):
        """A plain route (no dependency solving per call, called directly by the dispatch step, alone or
        inside $batch): the hot path of a sync engine and of bench/sandbox_graph.py."""
        _, account = mailbox_owner(sandbox, request, request.path_params.get("user_id", "me"))
        record, _ = events.create(account, await json_object(request))
        return entity(request, account.id, record, status=201)

    for path in ("/users/{user_id}/events", "/me/events"):
        api.add_route(api.prefix + path, create_event, methods=["POST"], include_in_schema=False)  # not prefixed itself

    @api.get("/users/{user_id}/events")
    @api.get("/me/events")
    async def list_events(request: Request, user_id: str = "me"):
        _, account = mailbox_owner(sandbox, request, user_id)
        params = request.query_params
        if "$orderby" in params or "$search" in params:
            raise graph_error(400, "ErrorInvalidUrlQuery", "The sandbox does not emulate $orderby/$search on events.")
        keep = extended_property_filter(params.get("$filter"))
        expand_ids = expanded_property_ids(params.get("$expand"))
        tz_name = preferred_time_zone(request)
        matching = [r for r in events.list(account.id) if keep(r)]
        page, next_link = page_of(request, matching)
        answer = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account.id}')/events",
            "value": [
                select(event_model.render(r, tz_name=tz_name, expand_ids=expand_ids), params.get("$select"), _ALWAYS_SELECTED)
                for r in page
            ],
        }
        if next_link:
            answer["@odata.nextLink"] = next_link
        return JSONResponse(answer, headers=applied_preferences(request))

    @api.get("/users/{user_id}/events/{event_id}")
    @api.get("/me/events/{event_id}")
    async def get_event(request: Request, event_id: str, user_id: str = "me"):
        _, account = mailbox_owner(sandbox, request, user_id)
        occurrence = events.occurrence(account.id, event_id)
        if occurrence is not None:
            return entity(request, account.id, occurrence[0], instance=occurrence[1])
        return entity(request, account.id, events.get(account.id, event_id))

    @api.patch("/users/{user_id}/events/{event_id}")
    @api.patch("/me/events/{event_id}")
    async def update_event(request: Request, event_id: str, body: Annotated[dict, Body()], user_id: str = "me"):
        _, account = mailbox_owner(sandbox, request, user_id)
        if_match = request.headers.get("if-match")  # 412 when stale: event_store.check_if_match
        if events.occurrence(account.id, event_id) is not None:
            master, instance = events.write_occurrence(account, event_id, body, if_match)
            return entity(request, account.id, master, instance=instance)
        return entity(request, account.id, events.update(account, event_id, body, if_match))

    @api.delete("/users/{user_id}/events/{event_id}", status_code=204)
    @api.delete("/me/events/{event_id}", status_code=204)
    async def delete_event(request: Request, event_id: str, user_id: str = "me"):
        _, account = mailbox_owner(sandbox, request, user_id)
        if not events.cancel_occurrence(account, event_id):
            events.delete(account, event_id)
        return Response(status_code=204)

    @api.get("/users/{user_id}/events/{event_id}/instances")
    @api.get("/me/events/{event_id}/instances")
    async def event_instances(request: Request, event_id: str, user_id: str = "me"):
        """Occurrences and exceptions of a series in the window, cancelled ones left out
        (https://learn.microsoft.com/graph/api/event-list-instances: startDateTime and endDateTime required)."""
        _, account = mailbox_owner(sandbox, request, user_id)
        params = request.query_params
        start, end = window(params.get("startDateTime"), params.get("endDateTime"))
        master = events.get(account.id, event_id)
        if not master.get("recurrence"):
            # Sandbox choice (Graph's answer here is not documented): instances of a non-series is a 400.
            raise graph_error(400, "ErrorInvalidRequest", "The event is not the master of a recurring series.")
        tz_name = preferred_time_zone(request)
        page, next_link = page_of(request, series.instances(master, start, end))
        answer = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account.id}')/events('{event_id}')/instances",
            "value": [select(series.render_instance(master, i, tz_name=tz_name), params.get("$select"), _ALWAYS_SELECTED)
                      for i in page],
        }
        if next_link:
            answer["@odata.nextLink"] = next_link
        return JSONResponse(answer, headers=applied_preferences(request))

    @api.get("/users/{user_id}/calendarView")
    @api.get("/me/calendarView")
    async def calendar_view(request: Request, user_id: str = "me"):
        """Instances overlapping the window: single events, and the occurrences and exceptions of series; not
        the masters themselves (https://learn.microsoft.com/graph/api/user-list-calendarview)."""
        _, account = mailbox_owner(sandbox, request, user_id)
        params = request.query_params
        start, end = window(params.get("startDateTime"), params.get("endDateTime"))
        keep = extended_property_filter(params.get("$filter"))
        tz_name = preferred_time_zone(request)
        found = [
            (record, instance)
            for record in events.list(account.id)
            if keep(record)
            for instance in series.instances(record, start, end)
        ]
        found.sort(key=lambda pair: pair[1][1])
        page, next_link = page_of(request, found)
        answer = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account.id}')/calendarView",
            "value": [series.render_instance(record, instance, tz_name=tz_name) for record, instance in page],
        }
        if next_link:
            answer["@odata.nextLink"] = next_link
        return JSONResponse(answer, headers=applied_preferences(request))

    return api


def control_router(sandbox, events: EventStore) -> APIRouter:
    api = APIRouter(prefix="/_sandbox/microsoft", tags=["sandbox control"])

    @api.post("/users/{user_id}/events", status_code=201)
    async def seed_event(user_id: str, body: Annotated[dict, Body()]) -> dict:
        """An event as another client left it in the mailbox: `event` is written as a POST writes it, and
        every read then answers the properties of `read_as` verbatim. Outlook desktop, for one, stores a
        custom time zone that Graph names "tzone://Microsoft/Custom" or "Customized Time Zone" in
        originalStartTimeZone (microsoftgraph/microsoft-graph-docs PR 812; phw198/OutlookGoogleCalendarSync
        issue 2148), which no client can write through Graph."""
        account = find_user(sandbox, user_id)
        if account is None:
            raise HTTPException(404, f"no Microsoft sandbox user {user_id}")
        record, _ = events.create(account, body.get("event") or {}, read_as=body.get("read_as"))
        return event_model.render(record)

    return api
