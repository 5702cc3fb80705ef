"""Which CRM records a message belongs on: every lead and contact whose address it carries, and every
deal whose primary contact is one of those contacts.

An address added to a record (by an edit, not at the record's creation) links only mail dated after
the change, as the seeds' product does; an org that turns on re-linking gets the earlier mail too.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas import CrmModule


@dataclass(frozen=True)
class RecordRef:
    module: CrmModule
    record_id: str


@dataclass(frozen=True)
class AddressLink:
    """One record carrying one address; linked_since None means since the record was created."""

    record: RecordRef
    linked_since: dt.datetime | None = None

    def covers(self, message_time: dt.datetime, relink: bool) -> bool:
        # A Date header holds whole seconds: mail of the change's own second counts as after it, or a
        # message sent right after a change could look older than the change and never be linked.
        return relink or self.linked_since is None or message_time >= self.linked_since.replace(microsecond=0)


_MODULE_ORDER = {CrmModule.LEADS: 0, CrmModule.CONTACTS: 1, CrmModule.DEALS: 2}


def records_for_message(
    parties: Iterable[str],
    links_by_address: Mapping[str, Iterable[AddressLink]],
    deals_by_contact: Mapping[str, Iterable[str]],
    message_time: dt.datetime,
    relink: bool = False,
) -> list[RecordRef]:
    """The records to attach a message to, each once, leads then contacts then deals."""
    found: dict[RecordRef, None] = {}
    for address in parties:
        for link in links_by_address.get(address, ()):
            if link.covers(message_time, relink):
                found[link.record] = None
    for record in [r for r in found if r.module == CrmModule.CONTACTS]:
        for deal_id in deals_by_contact.get(record.record_id, ()):
            found[RecordRef(CrmModule.DEALS, deal_id)] = None
    return sorted(found, key=lambda r: (_MODULE_ORDER[r.module], r.record_id))
