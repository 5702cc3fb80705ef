"""Pure decisions about a series' occurrences that reach the engine before the series itself is synced.

A first sync (or a series created and changed in quick succession) brings a series' cancelled and edited
occurrences while the series' own CRM record is still being created: they wait (series_backlog.py) and
are applied once the CRM's echo tells the series' record id. These functions decide the order and what
the kept occurrences amount to.
"""
from __future__ import annotations

from collections.abc import Iterable

from services.calendar_sync.model import CanonicalEvent, EventTime, with_exception_date
from services.calendar_sync.ports import ProviderEvent


def masters_first(events: Iterable[ProviderEvent]) -> list[ProviderEvent]:
    """The page's events with every series master (and single event) before the occurrences of a series,
    each group in the provider's order: an occurrence then finds its series' creation asked already."""
    events = list(events)
    return [e for e in events if not e.series_id] + [e for e in events if e.series_id]


def is_cancelled(remote: ProviderEvent) -> bool:
    return remote.event is None or remote.event.cancelled


def replay_plan(kept: Iterable[ProviderEvent]) -> tuple[tuple[EventTime, ...], tuple[ProviderEvent, ...]]:
    """What kept occurrences of one series amount to: the original starts the series excludes (cancelled
    occurrences: EXDATEs) and the exceptions to create as CRM events of their own.

    An exception whose occurrence was cancelled afterwards is no exception any more: Google reports the
    cancellation under the exception's id (the store kept the later one only), Graph under an id of its
    own, so the same original start decides too."""
    kept = list(kept)
    cancelled = tuple(r.original_start for r in kept if is_cancelled(r) and r.original_start is not None)
    gone = {start.instant() for start in cancelled}
    exceptions = tuple(r for r in kept if not is_cancelled(r)
                       and (r.original_start is None or r.original_start.instant() not in gone))
    return cancelled, exceptions


def excluding(series: CanonicalEvent, starts: Iterable[EventTime]) -> CanonicalEvent:
    """The series without the occurrences at these original starts (EXDATE lines; one already there stays one)."""
    for start in starts:
        series = with_exception_date(series, start)
    return series
