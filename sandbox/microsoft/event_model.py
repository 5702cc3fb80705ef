"""Graph `event` resources: what a write may carry, how it is stored, how it reads back.

Pure functions over plain dicts: a stored record holds the writable Graph properties as written (times
normalised), the server-set ones (id, changeKey, iCalUId...) and, under "_extended", the
singleValueExtendedProperties by id. Reference: https://learn.microsoft.com/graph/api/resources/event.
"""
from __future__ import annotations

import datetime as dt
import re

from sandbox.errors import graph_error
from sandbox.microsoft import recurrence as recurrences
from sandbox.microsoft.timezones import zone

GRAPH_DATETIME = "%Y-%m-%dT%H:%M:%S.0000000"
# Properties a client may write, with nothing more than a type to check.
_PASSTHROUGH = {
    "subject": str, "categories": list, "showAs": str, "importance": str, "sensitivity": str,
    "isOnlineMeeting": bool, "onlineMeetingProvider": str, "responseRequested": bool,
    "allowNewTimeProposals": bool, "hideAttendees": bool, "isReminderOn": bool,
    "reminderMinutesBeforeStart": int, "isAllDay": bool, "location": dict, "locations": list,
}
_CHECKED = {"body", "start", "end", "attendees", "recurrence", "transactionId", "singleValueExtendedProperties"}
# Server-set properties a client may echo back; Graph ignores them on write.
_READ_ONLY = {
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "iCalUId", "type", "seriesMasterId",
    "organizer", "webLink", "isOrganizer", "isCancelled", "responseStatus", "bodyPreview", "hasAttachments",
    "originalStartTimeZone", "originalEndTimeZone", "onlineMeeting", "onlineMeetingUrl", "isDraft",
}
# https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-post-singlevalueextendedproperties
_EXTENDED_ID = re.compile(
    r"^(String|Integer|Boolean|SystemTime|Double|Binary|Currency|CLSID|Short|Long)\s+"
    r"(\{[0-9a-fA-F-]{36}\}\s+(Name\s+\S.*|Id\s+0x[0-9a-fA-F]+)|0x[0-9a-fA-F]{1,4})$"
)


def bad_property(message: str):
    return graph_error(400, "RequestBodyRead", message)


def unknown_property(type_name: str, name: str):
    return bad_property(
        f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type."
    )


def _validation_failure():
    # What Outlook answers for an all-day event whose start or end is not at midnight.
    return graph_error(400, "ErrorPropertyValidationFailure", "At least one property failed validation.")


def parse_local(value: str, field: str) -> dt.datetime:
    """A Graph `dateTime` (up to 7 fractional digits, offset optional) as a naive wall-clock time."""
    text = str(value or "").strip().replace("Z", "+00:00")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise bad_property(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTime' ({field}).") from None
    return parsed


def _time_zone_value(value, field: str) -> dict:
    if not isinstance(value, dict) or "dateTime" not in value:
        raise bad_property(f"'{field}' must be a dateTimeTimeZone with dateTime and timeZone.")
    name = value.get("timeZone") or "UTC"
    tz = zone(name)
    local = parse_local(value["dateTime"], field)
    if local.tzinfo is not None:  # an explicit offset wins; keep the wall time in the named zone
        local = local.astimezone(tz).replace(tzinfo=None)
    return {"dateTime": local.strftime(GRAPH_DATETIME), "timeZone": name}


def aware(value: dict) -> dt.datetime:
    """A stored dateTimeTimeZone as an aware datetime in its own zone."""
    return parse_local(value["dateTime"], "dateTime").replace(tzinfo=zone(value["timeZone"]))


def _attendees(value) -> list:
    if not isinstance(value, list):
        raise bad_property("'attendees' must be a collection.")
    checked = []
    for attendee in value:
        address = ((attendee or {}).get("emailAddress") or {}).get("address")
        if not address or "@" not in str(address):
            raise graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        kind = attendee.get("type", "required")
        if kind not in ("required", "optional", "resource"):
            raise bad_property(f"Cannot convert the literal '{kind}' to the expected type 'microsoft.graph.attendeeType'.")
        checked.append({"type": kind, "emailAddress": dict(attendee["emailAddress"])})
    return checked


def extended_properties(current: dict, value) -> dict:
    merged = dict(current)
    for item in value if isinstance(value, list) else [None]:
        prop_id = (item or {}).get("id")
        if not isinstance(prop_id, str) or not _EXTENDED_ID.match(prop_id.strip()):
            raise graph_error(400, "ErrorInvalidProperty", f"The extended property id '{prop_id}' is not valid.")
        merged[prop_id.strip()] = None if item.get("value") is None else str(item["value"])
    return {k: v for k, v in merged.items() if v is not None}


def start_write(current: dict | None, body, read_only: frozenset | set) -> tuple[dict, list[tuple[str, object]]]:
    """The record a POST (current None) or PATCH writes into, and the body's properties it writes: annotations
    and server-set properties a client echoes back are ignored, as Graph does."""
    if not isinstance(body, dict):
        raise bad_property("The request body must be a JSON object.")
    writes = [(n, v) for n, v in body.items() if not n.startswith("@odata.") and n not in read_only]
    return dict(current or {}), writes


def apply_write(current: dict | None, body: dict) -> dict:
    """The writable part of a record after a POST (current None) or a PATCH; 400 on what Graph refuses."""
    record, writes = start_write(current, body, _READ_ONLY)
    for name, value in writes:
        if name in _PASSTHROUGH:
            if value is not None and not isinstance(value, _PASSTHROUGH[name]):
                raise bad_property(f"Invalid value for property '{name}'.")
            record[name] = value
        elif name == "body":
            kind = str((value or {}).get("contentType", "text")).lower()
            if kind not in ("text", "html"):
                raise bad_property(f"Cannot convert the literal '{kind}' to the expected type 'microsoft.graph.bodyType'.")
            record["body"] = {"contentType": kind, "content": str((value or {}).get("content") or "")}
        elif name in ("start", "end"):
            record[name] = _time_zone_value(value, name)
        elif name == "attendees":
            record["attendees"] = _attendees(value)
        elif name == "recurrence":
            record["recurrence"] = recurrences.validate(value)
        elif name == "transactionId":
            if current is not None and value != current.get("transactionId"):
                raise graph_error(400, "ErrorInvalidRequest", "The transactionId of an event can't be changed.")
            record["transactionId"] = value
        elif name == "singleValueExtendedProperties":
            record["_extended"] = extended_properties(record.get("_extended", {}), value)
        else:
            raise unknown_property("event", name)
    _check_times(record)
    return record


def _check_times(record: dict) -> None:
    if "start" not in record or "end" not in record:
        raise graph_error(400, "ErrorInvalidRequest", "Your request can't be completed. The event needs a start and an end.")
    start, end = aware(record["start"]), aware(record["end"])
    if end < start:
        raise graph_error(400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date.")
    if record.get("isAllDay"):
        midnight = dt.time(0, 0)
        if start.time() != midnight or end.time() != midnight or end <= start:
            raise _validation_failure()
        if record["start"]["timeZone"] != record["end"]["timeZone"]:
            raise _validation_failure()


def render_time(value: dict, all_day: bool, tz_name: str) -> dict:
    if all_day:  # all-day events are floating days: midnight wherever they are read
        return {"dateTime": parse_local(value["dateTime"], "").strftime(GRAPH_DATETIME), "timeZone": tz_name}
    moment = aware(value).astimezone(zone(tz_name))
    return {"dateTime": moment.strftime(GRAPH_DATETIME), "timeZone": tz_name}


def item_header(record: dict) -> dict:
    """What every Outlook item (event, contact) starts with: its etag (from the changeKey), id and stamps."""
    return {
        "@odata.etag": f'W/"{record["changeKey"]}"',
        "id": record["id"],
        "createdDateTime": record["createdDateTime"],
        "lastModifiedDateTime": record["lastModifiedDateTime"],
        "changeKey": record["changeKey"],
    }


def render(record: dict, *, tz_name: str = "UTC", expand_ids: list[str] | None = None) -> dict:
    """The event as Graph returns it; times in `tz_name` (Prefer: outlook.timezone), UTC by default."""
    all_day = bool(record.get("isAllDay"))
    content = record.get("body", {}).get("content", "")
    out = {
        **item_header(record),
        "categories": record.get("categories", []),
        "originalStartTimeZone": record["start"]["timeZone"],
        "originalEndTimeZone": record["end"]["timeZone"],
        "iCalUId": record["iCalUId"],
        "reminderMinutesBeforeStart": record.get("reminderMinutesBeforeStart", 15),
        "isReminderOn": record.get("isReminderOn", True),
        "hasAttachments": False,
        "subject": record.get("subject") or "",
        "bodyPreview": re.sub(r"<[^>]+>", "", content)[:255],
        "importance": record.get("importance", "normal"),
        "sensitivity": record.get("sensitivity", "normal"),
        "isAllDay": all_day,
        "isCancelled": bool(record.get("isCancelled", False)),
        "isOrganizer": record.get("isOrganizer", True),
        "responseRequested": record.get("responseRequested", True),
        "seriesMasterId": None,
        "showAs": record.get("showAs", "busy"),
        "type": "seriesMaster" if record.get("recurrence") else "singleInstance",
        "webLink": f"https://outlook.office365.com/owa/?itemid={record['id']}&exvsurl=1&path=/calendar/item",
        "isOnlineMeeting": record.get("isOnlineMeeting", False),
        "allowNewTimeProposals": record.get("allowNewTimeProposals", True),
        "recurrence": record.get("recurrence"),
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"}
        if record.get("isOrganizer", True) else {"time": "0001-01-01T00:00:00Z", **record.get("responseStatus", {})},
        "body": record.get("body", {"contentType": "text", "content": ""}),
        "start": render_time(record["start"], all_day, tz_name),
        "end": render_time(record["end"], all_day, tz_name),
        "location": record.get("location") or {"displayName": "", "locationType": "default"},
        "locations": record.get("locations", []),
        "attendees": [
            dict(a, status={"response": "none", "time": "0001-01-01T00:00:00Z"}) for a in record.get("attendees", [])
        ],
        "organizer": {"emailAddress": record["organizer"]},
    }
    out.update(record.get("_read_as") or {})  # as another client left it: see graph_events.seed_event
    if record.get("transactionId") is not None:  # returned only when an app set it
        out["transactionId"] = record["transactionId"]
    wanted = {i.lower() for i in expand_ids or []}
    matches = [{"id": k, "value": v} for k, v in record.get("_extended", {}).items() if k.lower() in wanted]
    if matches:
        out["singleValueExtendedProperties"] = matches
    return out
