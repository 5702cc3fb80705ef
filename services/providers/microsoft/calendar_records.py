"""Which CRM record each Outlook event stands for, as this process last learnt it: what spares a second
read of the events a delta round reports.

calendarView/delta cannot `$expand` our extended properties (sandbox/microsoft/graph_delta.py), so an
event's CRM record id comes from reading it again. Yet that id never changes once known: we stamp it
when we write the event (calendar_ids.stamp) and nothing else writes it. So the adapter remembers, per
CRM user (owner) and event id, the record id it wrote or read, or that the event is none of ours, and
a later round's item for that event is taken as delta reported it, with that record id: the echo of
our own PATCH, and a user's edit of an event seen before, cost no call beyond the delta page.

Kept per process (the least recently used go past MAX_EVENTS): a worker that never saw an event reads
it as before, so a restart or another worker costs reads, never a wrong answer. Full syncs (no cursor)
read the truth again and refresh what is kept here.
"""
from __future__ import annotations

import collections

MAX_EVENTS = 200_000  # ~30 MB at most per worker process
UNKNOWN = object()  # never learnt (or forgotten): the event is read


class KnownRecords:
    def __init__(self, max_events: int = MAX_EVENTS):
        self.max_events = max_events
        self._records: collections.OrderedDict[tuple[str, str], str | None] = collections.OrderedDict()

    def get(self, owner: str, event_id: str) -> str | None | object:
        """The record id (None: not ours) learnt for the event, or UNKNOWN."""
        key = (owner, event_id)
        found = self._records.get(key, UNKNOWN)
        if found is not UNKNOWN:
            self._records.move_to_end(key)
        return found

    def learn(self, owner: str, event_id: str, crm_record_id: str | None) -> None:
        key = (owner, event_id)
        self._records[key] = crm_record_id
        self._records.move_to_end(key)
        while len(self._records) > self.max_events:
            self._records.popitem(last=False)

    def forget(self, owner: str, event_id: str) -> None:
        self._records.pop((owner, event_id), None)
