"""Occurrences cancelled in Outlook series, read for the Graph calendar adapter (calendar.py).

Graph v1.0 reports no cancelled occurrence: calendarView/delta re-sends the series without it and no
`@removed`, and `cancelledOccurrences` exists in beta only (see services/calendar_sync/mapping_graph_series,
which compares a series' rule with its instances). This reads the instances, 20 series to a `$batch`
(https://learn.microsoft.com/graph/api/event-list-instances), and turns each cancelled date into a
deletion of that occurrence for the engine, which excludes the date from the series (EXDATE).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from services.calendar_sync import mapping
from services.calendar_sync.ports import ProviderEvent
from services.providers.microsoft.graph import BatchRequest, GraphClient, error_of, with_query

_PAGE = 1000  # $top: the most an events page holds, so a series' window is one call


def graph_time(moment: dt.datetime) -> str:
    """An instant as Graph's query parameters take it (UTC, whole seconds)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def cancelled_in(client: GraphClient, event_path: Callable[[str], str], masters: list[dict],
                       window: tuple[dt.datetime, dt.datetime]) -> dict[str, list[ProviderEvent]]:
    """Series master id -> the occurrences cancelled in that series within the window, as deletions. They
    are reported on every round a series changes in (excluding a date twice changes nothing). A
    cancelled occurrence has no id left to read: it is named by its series and original start."""
    params = {"startDateTime": graph_time(window[0]), "endDateTime": graph_time(window[1]),
              "$select": "id,type,start,originalStart", "$top": str(_PAGE)}
    requests = [BatchRequest("GET", with_query(f"{event_path(m['id'])}/instances", params)) for m in masters]
    found: dict[str, list[ProviderEvent]] = {}
    for master, answer in zip(masters, await client.batch(requests)):
        if answer.status == 404:
            continue  # the series went meanwhile: its deletion comes with a later round
        if not answer.ok:
            raise error_of(answer, f"GET instances of {master['id']}")
        listed = list(answer.body.get("value", []))
        if answer.body.get("@odata.nextLink"):
            async for page in client.pages(answer.body["@odata.nextLink"]):
                listed.extend(page)
        found[master["id"]] = [
            ProviderEvent(f"{master['id']}@{start.rfc3339()}", None, series_id=master["id"], original_start=start)
            for start in mapping.cancelled_occurrences(master, listed, *window)]
    return found
