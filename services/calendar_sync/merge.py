"""The three-way merge of a CRM event and its provider copy against the last synced snapshot.

Per field of MERGED_FIELDS:
- changed on one side only: that side's value, so edits to different fields on both sides are all kept;
- changed on both sides to different values: the later modification wins, the CRM wins ties, and the
  clash is listed as a Conflict (logged, and shown to the user through the admin API);
- no snapshot yet (a first sync, a lost mapping): every field counts as changed on both sides.

Three refinements keep the merge from fighting the providers:
- What a provider cannot hold is not a change. `provider_holds` gives the event as the provider holds
  it (mapping.fit_google / fit_graph: a cut description, 5 or 1 reminders, capped attendees); the
  provider's values are compared with what the provider held after the last sync (`provider_base`, or
  the snapshot as the provider holds it), so a cut is never taken for a deletion, and the CRM keeps its
  fuller value.
- Attendees' answers belong to the invitees, who give them in their calendars: an answer the provider
  has recorded (anything but needs_action) is kept whichever side won the attendee list, and answers
  never make the provider copy differ (Graph does not even let them be written).
- A start and an end are one time range: when the fields merged one by one give an end before the
  start (or an all-day start with a timed end), the range is taken whole from the later side.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from services.calendar_sync.model import MERGED_FIELDS, Attendee, CanonicalEvent

Side = Literal["crm", "provider"]


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed to different values; the values as JSON, as the admin API lists them."""

    field: str
    crm_value: Any
    provider_value: Any
    winner: Side


@dataclass(frozen=True)
class MergeResult:
    merged: CanonicalEvent
    to_crm: bool  # the CRM record must be updated to `merged`
    to_provider: bool  # the provider copy must be updated to `merged`
    conflicts: tuple[Conflict, ...]


def merge_three_way(
    base: CanonicalEvent | None,
    crm: CanonicalEvent,
    provider: CanonicalEvent,
    crm_modified_at: dt.datetime,
    provider_modified_at: dt.datetime,
    *,
    provider_holds: Callable[[CanonicalEvent], CanonicalEvent] | None = None,
    provider_base: CanonicalEvent | None = None,
) -> MergeResult:
    """Merge per field against `base`, the snapshot both sides held after the last sync; `provider_base`,
    when known, is what the provider held then (else `base` as the provider holds it)."""
    holds = provider_holds or (lambda event: event)
    later: Side = "crm" if crm_modified_at >= provider_modified_at else "provider"
    held_base, held_crm = (holds(base) if base is not None else None), holds(crm)
    if base is not None and provider_base is not None:
        held_base = provider_base
    values: dict[str, object] = {}
    conflicts: dict[str, Conflict] = {}
    for name in MERGED_FIELDS:
        crm_value, provider_value = getattr(crm, name), getattr(provider, name)
        crm_changed = base is None or _differ(name, crm_value, getattr(base, name))
        provider_changed = held_base is None or _differ(name, provider_value, getattr(held_base, name))
        if crm_changed and provider_changed and _differ(name, getattr(held_crm, name), provider_value):
            winner = later
            conflicts[name] = Conflict(name, _as_json(crm_value), _as_json(provider_value), winner)
        else:  # one side changed, or both alike: a tie in the provider's terms keeps the CRM's fuller value
            winner = "provider" if provider_changed and not crm_changed else "crm"
        values[name] = crm_value if winner == "crm" else provider_value
    _keep_one_time_range(values, crm, provider, later, conflicts)
    values["attendees"] = _with_provider_answers(values["attendees"], provider.attendees)
    merged = crm.model_copy(update={**values, "ical_uid": crm.ical_uid or provider.ical_uid, "cancelled": False})
    held_merged, held_provider = holds(merged), holds(provider)
    return MergeResult(
        merged=merged,
        to_crm=any(getattr(merged, n) != getattr(crm, n) for n in MERGED_FIELDS) or merged.ical_uid != crm.ical_uid,
        to_provider=any(_differ(n, getattr(held_merged, n), getattr(held_provider, n)) for n in MERGED_FIELDS),
        conflicts=tuple(conflicts.values()),
    )


def _differ(name: str, one: object, other: object) -> bool:
    """Whether two values of a field differ in what a sync writes (attendees' answers are not written)."""
    if name == "attendees":
        return _without_answers(one) != _without_answers(other)  # type: ignore[arg-type]
    return one != other


def _without_answers(attendees: tuple[Attendee, ...]) -> tuple[tuple[str, str, bool], ...]:
    return tuple((a.email, a.name, a.optional) for a in attendees)


def _with_provider_answers(attendees, provider_attendees: tuple[Attendee, ...]) -> tuple[Attendee, ...]:
    answers = {a.email: a.response for a in provider_attendees if a.response != "needs_action"}
    return tuple(
        a.model_copy(update={"response": answers[a.email]}) if answers.get(a.email, a.response) != a.response else a
        for a in attendees
    )


def _keep_one_time_range(values: dict, crm: CanonicalEvent, provider: CanonicalEvent, later: Side,
                         conflicts: dict[str, Conflict]) -> None:
    start, end = values["start"], values["end"]
    if start.all_day == end.all_day and end.instant() >= start.instant():
        return
    side = crm if later == "crm" else provider
    values["start"], values["end"] = side.start, side.end
    for name in ("start", "end"):
        if name not in conflicts and getattr(crm, name) != getattr(provider, name):
            conflicts[name] = Conflict(name, _as_json(getattr(crm, name)), _as_json(getattr(provider, name)), later)


def _as_json(value: object) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return [_as_json(item) for item in value]
    return value
