"""`/v1.0/users/{id}/calendarView/delta`: a full round, then only what changed since the deltaLink.

As documented (https://learn.microsoft.com/graph/delta-query-events and
https://learn.microsoft.com/graph/api/event-delta):
- the first call names the window (startDateTime, endDateTime); the state tokens carry it afterwards;
- $select, $filter, $orderby, $search, $expand (and $top) are refused;
- `Prefer: odata.maxpagesize=N` sizes the pages, answered with `Preference-Applied`;
- pages end in `@odata.nextLink` ($skiptoken) until the last, which carries `@odata.deltaLink` ($deltatoken);
- series are returned as their occurrences in the window; an instance that left the window comes back as
  `{"@odata.type": "#microsoft.graph.event", "id", "@removed": {"reason": "changed"}}`, a deleted one with
  reason "deleted".
A token the sandbox no longer knows answers 410 SyncStateNotFound, with a `Location` to a fresh initial
query when the window is known (shape seen from Graph: microsoftgraph/microsoft-graph-docs issue 2350;
410 + Location: https://learn.microsoft.com/graph/delta-query-overview).
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from sandbox.errors import graph_error
from sandbox.microsoft import event_model, series
from sandbox.microsoft.event_store import EventStore
from sandbox.microsoft.graph_common import (
    applied_preferences,
    base_url,
    decode_token,
    encode_token,
    preferences,
    preferred_time_zone,
    window,
)
from sandbox.microsoft.graph_users import find_user, mailbox_owner

DELTA_PAGE_DEFAULT, DELTA_PAGE_MAX = 10, 1000
_REFUSED = ("$select", "$filter", "$orderby", "$search", "$expand", "$top")


def delta_page_size(request: Request) -> tuple[int, int | None]:
    """The page size and, when the client asked for one, the size applied (capped at DELTA_PAGE_MAX)."""
    asked = preferences(request).get("odata.maxpagesize", "")
    if not asked.isdigit() or int(asked) < 1:
        return DELTA_PAGE_DEFAULT, None
    size = min(int(asked), DELTA_PAGE_MAX)
    return size, size


def delta_answer(request: Request, groups: list[list[dict]], state: dict, since: int, upto: int, offset: int,
                 collection: str) -> JSONResponse:
    """One page of a delta round over `groups` (items that travel together: a series is never split over
    pages), from group `offset`; a page ends once it holds the page size or more items. The state tokens
    carry `state`, the round's bounds and where the next page starts."""
    size, applied = delta_page_size(request)
    end, count = offset, 0
    while end < len(groups) and count < size:
        count += len(groups[end])
        end += 1
    answer = {"@odata.context": f"{base_url(request)}/v1.0/$metadata#Collection({collection})",
              "value": [item for group in groups[offset:end] for item in group]}
    link = f"{base_url(request)}{quote(request.url.path)}"
    if end < len(groups):
        answer["@odata.nextLink"] = f"{link}?$skiptoken={encode_token({**state, 'q': since, 'U': upto, 'o': end})}"
    else:
        answer["@odata.deltaLink"] = f"{link}?$deltatoken={encode_token({**state, 'q': upto})}"
    return JSONResponse(answer, headers=applied_preferences(request, maxpagesize=applied))


def removed_item(item_id: str, reason: str, odata_type: str = "#microsoft.graph.event") -> dict:
    return {"@odata.type": odata_type, "id": item_id, "@removed": {"reason": reason}}


def _now_reported(record: dict | None, start, end, tz_name: str) -> tuple[list[dict], set[str]]:
    """What the event contributes to a round as it stands, and the ids of those items. A single event: itself
    if in the window. A series with an instance in the window: its master (whole), its occurrences (bare:
    ids, type and times) and its exceptions (whole), as Graph lists them (keeper.sh pull request 409 for the
    master, microsoftgraph/microsoft-graph-docs issue 7632 for the bare occurrences)."""
    if record is None:
        return [], set()
    found = series.instances(record, start, end)
    if not record.get("recurrence"):
        return [series.render_instance(record, i, tz_name=tz_name) for i in found], {i.id for i in found}
    if not found:
        return [], set()
    items = [event_model.render(record, tz_name=tz_name)]
    for instance in found:
        if instance.kind == "occurrence":
            items.append(series.render_bare_occurrence(record, instance, tz_name=tz_name))
        else:
            items.append(series.render_instance(record, instance, tz_name=tz_name))
    return items, {record["id"]} | {i.id for i in found}


def delta_groups(events: EventStore, user_id: str, since: int, upto: int, start, end, tz_name: str) -> list[list[dict]]:
    """What a round from sequence `since` to `upto` reports, one group per changed event (a series is never
    split over pages: microsoftgraph/microsoft-graph-docs pull request 4501): its items now in the window,
    then its removals. A deleted event's items all come back removed ("deleted"); a single event that left
    the window, or a series that did, comes back removed "changed". An occurrence cancelled (or dropped by a
    new pattern) while its series stays is not reported at all, as Graph gives "no indication for a deleted
    occurrence" (same pull request): the series is re-sent whole, and what it no longer holds is gone."""
    groups = []
    for before, after in events.changed_between(user_id, since, upto):
        group, now_ids = _now_reported(after, start, end, tz_name)
        _, before_ids = _now_reported(before, start, end, tz_name)
        gone = before_ids - now_ids
        if after is None:
            group += [removed_item(i, "deleted") for i in sorted(gone)]
        elif before is not None and (before.get("recurrence") or after.get("recurrence")):
            group += [removed_item(i, "changed") for i in sorted(gone & {before["id"]})]
        else:
            group += [removed_item(i, "changed") for i in sorted(gone)]
        if group:
            groups.append(group)
    return groups


_ROUNDS_KEPT = 16


def router(sandbox, events: EventStore) -> APIRouter:
    api = APIRouter(tags=["graph delta"])
    rounds: OrderedDict[tuple, list[list[dict]]] = OrderedDict()

    def round_groups(user_id: str, since: int, upto: int, start, end, tz_name: str) -> list[list[dict]]:
        """A round's groups, worked out once for all its pages: they depend on nothing but the events' states
        at `since` and `upto`, which later writes do not change. Worked out again for each page, a first sync
        of 5,000 events rendered every event on each of its ten pages."""
        key = (events.epoch, user_id, events.delta_generation(user_id), since, upto, start, end, tz_name)
        groups = rounds.get(key)
        if groups is None:
            groups = rounds[key] = delta_groups(events, user_id, since, upto, start, end, tz_name)
            while len(rounds) > _ROUNDS_KEPT:
                rounds.popitem(last=False)
        rounds.move_to_end(key)
        return groups

    def fresh_query_url(request: Request, token: dict) -> dict[str, str]:
        if not {"s", "e"} <= token.keys():
            return {}
        query = urlencode({"startDateTime": token["s"], "endDateTime": token["e"]})
        return {"Location": f"{base_url(request)}{request.url.path}?{query}"}

    def read_token(request: Request, user_id: str, name: str, *counters: str) -> dict:
        token = decode_token(request.query_params[name]) or {}
        generation = events.delta_generation(user_id)
        well_formed = all(isinstance(token.get(k), int) for k in ("q", *counters)) and all(
            isinstance(token.get(k), str) for k in ("s", "e")
        )
        if not well_formed or token.get("u") != user_id or token.get("g") != generation:
            raise graph_error(
                410,
                "SyncStateNotFound",
                f"The sync state generation is not found; generation={token.get('g')};[highest={generation}].",
                headers=fresh_query_url(request, token),
            )
        return token

    @api.get("/v1.0/users/{user_id}/calendarView/delta")
    @api.get("/v1.0/me/calendarView/delta")
    async def calendar_view_delta(request: Request, user_id: str = "me"):
        _, account = mailbox_owner(sandbox, request, user_id)
        params = request.query_params
        refused = [p for p in _REFUSED if p in params]
        if refused:
            raise graph_error(
                400,
                "ErrorInvalidUrlQuery",
                f"The following parameters are not supported with change tracking over the 'CalendarView' resource: '{', '.join(refused)}'.",
            )
        if "$skiptoken" in params:
            token = read_token(request, account.id, "$skiptoken", "U", "o")
            since, upto, offset = token["q"], token["U"], token["o"]
        elif "$deltatoken" in params:
            token = read_token(request, account.id, "$deltatoken")
            since, upto, offset = token["q"], events.seq, 0
        else:
            start, end = window(params.get("startDateTime"), params.get("endDateTime"))
            token = {"s": start.isoformat(), "e": end.isoformat()}
            since, upto, offset = 0, events.seq, 0
        start, end = dt.datetime.fromisoformat(token["s"]), dt.datetime.fromisoformat(token["e"])
        groups = round_groups(account.id, since, upto, start, end, preferred_time_zone(request))
        state = {"u": account.id, "g": events.delta_generation(account.id), "s": token["s"], "e": token["e"]}
        return delta_answer(request, groups, state, since, upto, offset, "event")

    @api.post("/_sandbox/microsoft/users/{user_id}/invalidate-delta-tokens", tags=["sandbox control"])
    async def invalidate_delta_tokens(user_id: str) -> dict:
        """Make every delta/skip token of the user unknown, as when Outlook drops its sync state."""
        account = find_user(sandbox, user_id)
        if account is None:
            raise HTTPException(404, f"no Microsoft sandbox user {user_id}")
        return {"user_id": account.id, "generation": events.invalidate_delta_tokens(account.id)}

    return api
