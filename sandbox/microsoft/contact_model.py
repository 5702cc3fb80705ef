"""Graph `contact` and `contactFolder` resources: what a write may carry, how it reads back.

Pure functions over plain dicts, like event_model.py: a stored contact holds the writable properties as
written, the server-set ones (id, changeKey, parentFolderId...) and, under "_extended", its
singleValueExtendedProperties by id. Reference: https://learn.microsoft.com/graph/api/resources/contact
and https://learn.microsoft.com/graph/api/resources/contactfolder.
"""
from __future__ import annotations

import datetime as dt

from sandbox.errors import graph_error
from sandbox.microsoft.event_model import (
    bad_property,
    extended_properties,
    item_header,
    parse_local,
    start_write,
    unknown_property,
)

_STRINGS = frozenset({
    "assistantName", "businessHomePage", "companyName", "department", "displayName", "fileAs", "generation",
    "givenName", "initials", "jobTitle", "manager", "middleName", "mobilePhone", "nickName", "officeLocation",
    "personalNotes", "profession", "spouseName", "surname", "title", "yomiCompanyName", "yomiGivenName",
    "yomiSurname",
})
_STRING_LISTS = frozenset({"businessPhones", "homePhones", "imAddresses", "children", "categories"})
_ADDRESSES = frozenset({"businessAddress", "homeAddress", "otherAddress"})
_ADDRESS_FIELDS = ("street", "city", "state", "countryOrRegion", "postalCode")
# Server-set properties a client may echo back; Graph ignores them on write.
_READ_ONLY = frozenset({"id", "createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId"})
_NAME_PARTS = ("givenName", "middleName", "surname")


def _string_list(name: str, value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_property(f"Invalid value for property '{name}': a collection of strings is expected.")
    return list(value)


def _email_addresses(value) -> list[dict]:
    if not isinstance(value, list):
        raise bad_property("'emailAddresses' must be a collection of emailAddress.")
    checked = []
    for item in value:
        address = (item or {}).get("address") if isinstance(item, dict) else None
        if not isinstance(address, str) or not address:
            raise bad_property("Each emailAddress needs an 'address'.")
        checked.append({"name": str(item.get("name") or address), "address": address})
    return checked


def _address(name: str, value) -> dict:
    if not isinstance(value, dict) or set(value) - set(_ADDRESS_FIELDS) - {"@odata.type"}:
        raise bad_property(f"'{name}' must be a physicalAddress ({', '.join(_ADDRESS_FIELDS)}).")
    return {field: value.get(field) for field in _ADDRESS_FIELDS if value.get(field) is not None}


def _birthday(value) -> str:
    """A DateTimeOffset, read back in UTC ("always in UTC time", contact resource, `birthday`)."""
    moment = parse_local(str(value), "birthday")
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_contact_write(current: dict | None, body) -> dict:
    """The writable part of a contact after a POST (current None) or a PATCH; 400 on what Graph refuses."""
    record, writes = start_write(current, body, _READ_ONLY)
    for name, value in writes:
        if value is None and name != "singleValueExtendedProperties":
            record.pop(name, None)
        elif name in _STRINGS:
            if not isinstance(value, str):
                raise bad_property(f"Invalid value for property '{name}'.")
            record[name] = value
        elif name in _STRING_LISTS:
            record[name] = _string_list(name, value)
        elif name == "emailAddresses":
            record[name] = _email_addresses(value)
        elif name in _ADDRESSES:
            record[name] = _address(name, value)
        elif name == "birthday":
            record[name] = _birthday(value)
        elif name == "singleValueExtendedProperties":
            record["_extended"] = extended_properties(record.get("_extended", {}), value)
        else:
            raise unknown_property("contact", name)
    if current is None and not record.get("displayName"):
        # Outlook composes a new contact's display name from its name parts when none is given.
        record["displayName"] = " ".join(record[p] for p in _NAME_PARTS if record.get(p))
    return record


def render_contact(record: dict, *, expand_ids: list[str] | None = None) -> dict:
    """The contact as Graph returns it: every property, null or empty when unset."""
    out = {
        **item_header(record),
        "parentFolderId": record["parentFolderId"],
        "birthday": record.get("birthday"),
    }
    for name in sorted(_STRINGS):
        out[name] = record.get(name, "" if name == "displayName" else None)
    for name in sorted(_STRING_LISTS):
        out[name] = record.get(name, [])
    out["emailAddresses"] = record.get("emailAddresses", [])
    for name in sorted(_ADDRESSES):
        out[name] = record.get(name, {})
    wanted = {i.lower() for i in expand_ids or []}
    matches = [{"id": k, "value": v} for k, v in record.get("_extended", {}).items() if k.lower() in wanted]
    if matches:
        out["singleValueExtendedProperties"] = matches
    return out


def check_folder_name(body) -> str:
    name = body.get("displayName") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise graph_error(400, "ErrorInvalidRequest", "The folder needs a displayName.")
    return name
