"""How a CRM record change moves the address index: pure, so the rules are tested without Redis.

Leads and Contacts carry addresses (Email, Secondary_Email); Deals carry their primary contact
(Contact_Name, an id or {"id": ...}); Users carry whether they are active. A deleted record leaves
the index. An address a record had at creation links all mail; one added later links mail from then.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from schemas import CrmChange, CrmModule, CrmOp
from services.mail_fetch.addresses import normalise_address

ADDRESS_FIELDS = ("Email", "Secondary_Email")
PRIMARY_CONTACT_FIELD = "Contact_Name"
INACTIVE_USER_STATES = frozenset({"inactive", "disabled", "deactivated", "deleted"})


@dataclass(frozen=True)
class AddressChange:
    """What to do to one record's addresses: added ones with the time they link mail from."""

    added: dict[str, dt.datetime | None] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()


def record_addresses(fields: dict) -> set[str]:
    found = set()
    for name in ADDRESS_FIELDS:
        value = fields.get(name)
        normalised = normalise_address(value) if isinstance(value, str) else None
        if normalised:
            found.add(normalised)
    return found


def address_change(change: CrmChange, previous: set[str], known_before: bool) -> AddressChange:
    """The diff between the addresses the index holds for a record and those the change carries."""
    if change.op == CrmOp.DELETED:
        return AddressChange(removed=frozenset(previous))
    current = record_addresses(change.fields)
    since = None if change.op == CrmOp.CREATED or not known_before else change.modified_at
    return AddressChange(added={a: since for a in current - previous}, removed=frozenset(previous - current))


def primary_contact(change: CrmChange) -> str | None:
    """The deal's primary contact id, or None (deleted deal, or no contact)."""
    if change.op == CrmOp.DELETED:
        return None
    value = change.fields.get(PRIMARY_CONTACT_FIELD)
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def user_is_active(change: CrmChange) -> bool:
    if change.op == CrmOp.DELETED:
        return False
    status = change.fields.get("status", change.fields.get("Status", "active"))
    return str(status).lower() not in INACTIVE_USER_STATES


def indexed_module(change: CrmChange) -> bool:
    return change.module in (CrmModule.LEADS, CrmModule.CONTACTS, CrmModule.DEALS, CrmModule.USERS)
