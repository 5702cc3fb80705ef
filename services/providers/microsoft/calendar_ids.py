"""What crmsync writes on the Outlook events it creates, so that it can find them again with no mapping.

Two single-value extended properties (MAPI named properties, in a property set of our own GUID;
https://learn.microsoft.com/graph/api/resources/extended-properties-overview):
- `crmsync_record_id`: the CRM record the event stands for. Found with $filter ... Any(...), read with
  $expand; this is how a lost mapping is recovered.
- `crmsync_owner`: "org:user", the CRM user whose sync wrote it. Graph can filter extended properties
  only by id *and* value, so "every event we synced for this user" needs a property with a value known
  in advance: it is what disabling the sync deletes, and what a bulk write looks existing events up by.

`transactionId` (set at creation only) is derived from org, user and record: Graph answers a repeated
POST with the same transactionId with the event the first one created, so a retried create cannot
make a second event.
"""
from __future__ import annotations

import uuid

# Never change these: events already written carry them. The GUID names crmsync's own property set.
PROPERTY_SET = "{bfd21bc7-c958-457d-a1bb-580fd8e50724}"
RECORD_PROPERTY = f"String {PROPERTY_SET} Name crmsync_record_id"
OWNER_PROPERTY = f"String {PROPERTY_SET} Name crmsync_owner"
_TRANSACTION_NAMESPACE = uuid.UUID("7312ce4e-287d-426b-9708-7043548a74e9")


def owner_value(org_id: str, user_id: str) -> str:
    return f"{org_id}:{user_id}"


def transaction_id(org_id: str, user_id: str, crm_record_id: str, replacing: str | None = None) -> str:
    """The same for every create of one record's event; `replacing` (the id of an event the user deleted)
    makes the re-creation's id differ from the first creation's, which Graph might still remember."""
    name = "\n".join((org_id, user_id, crm_record_id, replacing or ""))
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, name))


def stamp(org_id: str, user_id: str, crm_record_id: str) -> list[dict]:
    """The extended properties a written event carries."""
    return [
        {"id": RECORD_PROPERTY, "value": crm_record_id},
        {"id": OWNER_PROPERTY, "value": owner_value(org_id, user_id)},
    ]


def _literal(value: str) -> str:
    """An OData string literal: quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def has_property(property_id: str, value: str) -> str:
    """$filter for events carrying the property with this value."""
    return (f"singleValueExtendedProperties/Any(ep: ep/id eq {_literal(property_id)} "
            f"and ep/value eq {_literal(value)})")


EXPAND_OURS = (f"singleValueExtendedProperties($filter=id eq {_literal(RECORD_PROPERTY)} "
               f"or id eq {_literal(OWNER_PROPERTY)})")


def properties_of(raw: dict) -> dict[str, str]:
    """Our extended properties on an event read with EXPAND_OURS: property id (as we spell it) -> value.
    Graph may answer property ids in another case than we wrote them."""
    ours = {RECORD_PROPERTY.lower(): RECORD_PROPERTY, OWNER_PROPERTY.lower(): OWNER_PROPERTY}
    found = {}
    for item in raw.get("singleValueExtendedProperties") or []:
        name = ours.get(str(item.get("id", "")).lower())
        if name is not None:
            found[name] = item.get("value")
    return found
