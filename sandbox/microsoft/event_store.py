"""Every Graph event of every sandbox user, with its history, in memory.

Each write appends a version (sequence number, record or None once deleted) to the event's history, so
that a delta round can be answered as "state at the token's sequence" against "state now", whatever
happened in between. Listeners (change notifications) hear of each write after the lock is released.

Meetings. As Exchange does, creating or updating an event with attendees who are users of the
organiser's tenant puts the meeting in each invitee's calendar: a copy with the same iCalUId, the
organiser's `organizer`, `isOrganizer` false and `responseStatus` notResponded. Later updates by the
organiser reach the copies (an invitee dropped from the list gets the meeting cancelled), and deleting
the meeting leaves the copies cancelled (`isCancelled`), as Outlook keeps a cancelled meeting until the
invitee removes it. Invitees outside the tenant get mail only, which the sandbox does not keep.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sandbox.errors import graph_error
from sandbox.microsoft import event_model, series

ChangeType = Literal["created", "updated", "deleted"]
# What an invitee's copy of a meeting takes from the organiser's event.
_MEETING_FIELDS = ("subject", "body", "start", "end", "isAllDay", "location", "locations", "attendees", "recurrence",
                   "isOnlineMeeting", "importance", "sensitivity")


@dataclass(frozen=True)
class Change:
    """One write a subscription may hear of: an event, or (kind "Contacts", with its folder) a contact."""

    user_id: str
    tenant_id: str | None
    event_id: str
    change_type: ChangeType
    change_key: str
    kind: str = "Events"
    folder_id: str | None = None


@dataclass
class History:
    user_id: str
    versions: list[tuple[int, dict | None]] = field(default_factory=list)

    @property
    def current(self) -> dict | None:
        return self.versions[-1][1]

    def at(self, seq: int) -> dict | None:
        """The record as it stood once write `seq` had happened (None: not yet created, or deleted)."""
        state = None
        for version_seq, record in self.versions:
            if version_seq > seq:
                break
            state = record
        return state


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _new_event_id() -> str:
    # Outlook ids are long url-safe base64 strings starting AAMk; only their opacity matters here.
    return "AAMkAGI" + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("=")


def check_if_match(record: dict, if_match: str | None) -> None:
    """A write with `If-Match` applies only while the item's etag (its changeKey) is that one; else 412
    ErrorIrresolvableConflict, the body Graph answers for a stale change key (mguessan/davmail issue 491,
    analogdotnow/Analog pull request 475 for event PATCHes). Weak and strong forms compare alike."""
    if not if_match or if_match.strip() == "*":
        return
    if _etag_value(if_match) != record["changeKey"]:
        raise graph_error(412, "ErrorIrresolvableConflict",
                          "The send or update operation could not be performed because the change key passed in "
                          "the request does not match the current change key for the item.")


def _etag_value(etag: str) -> str:
    etag = etag.strip()
    return etag.removeprefix("W/").strip('"')


def _not_found():
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


class EventStore:
    def __init__(self, directory: Callable[[str], object | None] | None = None) -> None:
        """`directory(address)`: the Microsoft account with that address, if any (invitees' calendars)."""
        self.lock = threading.RLock()
        self._listeners: list[Callable[[Change], None]] = []
        self._directory = directory or (lambda address: None)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.epoch = getattr(self, "epoch", 0) + 1  # sequence numbers start again: what was read from them is stale
            self._seq = 0
            self._events: dict[str, History] = {}
            self._by_user: dict[str, list[str]] = {}
            self._transactions: dict[tuple[str, str], str] = {}
            self._delta_generation: dict[str, int] = {}
            self._copies: dict[str, dict[str, str]] = {}  # organiser's event id -> invitee id -> copy id

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    def _publish(self, change: Change) -> None:
        for listener in self._listeners:
            listener(change)

    def _append(self, event_id: str, record: dict | None) -> None:
        self._seq += 1
        self._events[event_id].versions.append((self._seq, record))

    # --- writes ---------------------------------------------------------------------------------
    def create(self, account, body: dict, read_as: dict | None = None) -> tuple[dict, bool]:
        """The new record, or the existing one and False when its transactionId was seen before.
        `read_as`: properties every read answers verbatim (see event_model.render)."""
        transaction = body.get("transactionId") if isinstance(body, dict) else None
        with self.lock:
            existing_id = self._transactions.get((account.id, transaction)) if transaction else None
            if existing_id and self._events[existing_id].current is not None:
                return self._events[existing_id].current, False
            record = event_model.apply_write(None, body)
            stamp = now_stamp()
            record.update(
                id=_new_event_id(),
                createdDateTime=stamp,
                lastModifiedDateTime=stamp,
                changeKey=secrets.token_urlsafe(18),
                iCalUId="040000008200E00074C5B7101A82E008" + uuid.uuid4().hex.upper(),
                organizer={"name": account.display_name, "address": account.email},
            )
            if read_as:
                record["_read_as"] = dict(read_as)
            self._events[record["id"]] = History(account.id)
            self._by_user.setdefault(account.id, []).append(record["id"])
            if transaction:
                self._transactions[(account.id, transaction)] = record["id"]
            self._append(record["id"], record)
            changes = [Change(account.id, account.tenant_id, record["id"], "created", record["changeKey"])]
            changes += self._send_meeting(account, record)
        for change in changes:
            self._publish(change)
        return record, True

    def update(self, account, event_id: str, body: dict, if_match: str | None = None) -> dict:
        with self.lock:
            current = self.get(account.id, event_id)
            check_if_match(current, if_match)
            record = event_model.apply_write(current, body)
            record.update(lastModifiedDateTime=now_stamp(), changeKey=secrets.token_urlsafe(18))
            self._append(event_id, record)
            changes = [Change(account.id, account.tenant_id, event_id, "updated", record["changeKey"])]
            if record.get("isOrganizer", True):
                changes += self._send_meeting(account, record)
        for change in changes:
            self._publish(change)
        return record

    def delete(self, account, event_id: str) -> None:
        with self.lock:
            current = self.get(account.id, event_id)
            self._append(event_id, None)
            changes = [Change(account.id, account.tenant_id, event_id, "deleted", current["changeKey"])]
            if current.get("isOrganizer", True):
                changes += self._cancel_copies(account, event_id, set(self._copies.get(event_id, {})))
                self._copies.pop(event_id, None)
        for change in changes:
            self._publish(change)

    # --- occurrences of a series (series.py) ------------------------------------------------------
    def occurrence(self, user_id: str, event_id: str) -> tuple[dict, series.Instance] | None:
        """The master and the instance an occurrence or exception id names; None for any other id, 404 for
        an occurrence id of the user's series that is cancelled or not one of its dates."""
        parts = series.split_occurrence_id(event_id)
        if parts is None:
            return None
        with self.lock:
            history = self._events.get(parts[0])
            master = history.current if history is not None and history.user_id == user_id else None
            if master is None or not master.get("recurrence"):
                return None
            stamp = parts[1]
            original = series.original_start(master, stamp)
            if original is None or stamp in master.get("_cancelled", ()):
                raise _not_found()
            if stamp in master.get("_exceptions", {}):
                exception = master["_exceptions"][stamp]
                instance = series.Instance(event_id, event_model.aware(exception["start"]),
                                           event_model.aware(exception["end"]), "exception", stamp)
            else:
                record = series.occurrence_record(master, stamp)
                instance = series.Instance(event_id, event_model.aware(record["start"]),
                                           event_model.aware(record["end"]), "occurrence", stamp)
            return master, instance

    def _rewrite_master(self, account, master: dict, exceptions: dict, cancelled: list) -> dict:
        """A new version of the master holding the series' exceptions and cancellations: the master is the
        item that changed (its changeKey moves, delta and change notifications name it)."""
        record = dict(master, _exceptions=exceptions, _cancelled=cancelled, lastModifiedDateTime=now_stamp(),
                      changeKey=secrets.token_urlsafe(18))
        self._append(master["id"], record)
        return record

    def write_occurrence(self, account, event_id: str, body: dict,
                         if_match: str | None = None) -> tuple[dict, series.Instance]:
        """PATCH of an occurrence: it becomes (or stays) an exception with the same id."""
        if isinstance(body, dict) and body.get("recurrence") is not None:
            raise graph_error(400, "ErrorInvalidRequest", "The recurrence of an occurrence or exception can't be set.")
        with self.lock:
            master, instance = self.occurrence(account.id, event_id) or (None, None)
            if master is None:
                raise _not_found()
            check_if_match(series.instance_record(master, instance), if_match)
            exception = event_model.apply_write(series.instance_record(master, instance), body)
            if series.crosses_neighbours(master, instance.stamp, exception["start"]):
                raise graph_error(400, "ErrorOccurrenceCrossingBoundary",
                                  "Modified occurrence is crossing or overlapping adjacent occurrence.")
            exception.update(lastModifiedDateTime=now_stamp(), changeKey=secrets.token_urlsafe(18))
            exception.setdefault("createdDateTime", exception["lastModifiedDateTime"])
            exceptions = dict(master.get("_exceptions", {}), **{instance.stamp: exception})
            master = self._rewrite_master(account, master, exceptions, list(master.get("_cancelled", ())))
            kept = series.Instance(event_id, event_model.aware(exception["start"]), event_model.aware(exception["end"]),
                                   "exception", instance.stamp)
        self._publish(Change(account.id, account.tenant_id, master["id"], "updated", master["changeKey"]))
        return master, kept

    def cancel_occurrence(self, account, event_id: str) -> bool:
        """DELETE of an occurrence or exception: cancelled, gone from the series' views. False: not one."""
        with self.lock:
            found = self.occurrence(account.id, event_id)
            if found is None:
                return False
            master, instance = found
            exceptions = {k: v for k, v in master.get("_exceptions", {}).items() if k != instance.stamp}
            master = self._rewrite_master(account, master, exceptions, [*master.get("_cancelled", ()), instance.stamp])
        self._publish(Change(account.id, account.tenant_id, master["id"], "updated", master["changeKey"]))
        return True

    # --- meetings: the invitees' copies -----------------------------------------------------------
    def _invitees(self, organiser, record: dict) -> dict[str, object]:
        found = {}
        for attendee in record.get("attendees", []):
            if attendee.get("type") == "resource":
                continue
            invitee = self._directory(str(attendee["emailAddress"]["address"]))
            if invitee is not None and invitee.id != organiser.id and invitee.tenant_id == organiser.tenant_id:
                found[invitee.id] = invitee
        return found

    def _send_meeting(self, organiser, record: dict) -> list[Change]:
        """Create or update the invitees' copies of the organiser's meeting; cancel dropped invitees' copies."""
        copies = self._copies.setdefault(record["id"], {})
        invitees = self._invitees(organiser, record)
        changes = self._cancel_copies(organiser, record["id"], set(copies) - set(invitees))
        for invitee_id, invitee in invitees.items():
            meeting = {name: record[name] for name in _MEETING_FIELDS if name in record}
            copy_id = copies.get(invitee_id)
            current = self._events[copy_id].current if copy_id else None
            if current is None:
                copy = dict(meeting, id=_new_event_id(), createdDateTime=now_stamp(), iCalUId=record["iCalUId"],
                            organizer=record["organizer"], isOrganizer=False, responseStatus={"response": "notResponded"})
                copy_id = copies[invitee_id] = copy["id"]
                self._events[copy_id] = History(invitee_id)
                self._by_user.setdefault(invitee_id, []).append(copy_id)
                kind = "created"
            else:
                copy = {k: v for k, v in current.items() if k not in _MEETING_FIELDS} | meeting
                kind = "updated"
            copy.update(lastModifiedDateTime=now_stamp(), changeKey=secrets.token_urlsafe(18), isCancelled=False)
            self._append(copy_id, copy)
            changes.append(Change(invitee_id, invitee.tenant_id, copy_id, kind, copy["changeKey"]))
        return changes

    def _cancel_copies(self, organiser, event_id: str, invitee_ids: set[str]) -> list[Change]:
        changes = []
        copies = self._copies.get(event_id, {})
        for invitee_id in invitee_ids:
            copy_id = copies.pop(invitee_id, None)
            current = self._events[copy_id].current if copy_id else None
            if current is None or current.get("isCancelled"):
                continue
            cancelled = dict(current, isCancelled=True, lastModifiedDateTime=now_stamp(),
                             changeKey=secrets.token_urlsafe(18))
            self._append(copy_id, cancelled)
            changes.append(Change(invitee_id, organiser.tenant_id, copy_id, "updated", cancelled["changeKey"]))
        return changes

    # --- reads ----------------------------------------------------------------------------------
    def get(self, user_id: str, event_id: str) -> dict:
        with self.lock:
            history = self._events.get(event_id)
            if history is None or history.user_id != user_id or history.current is None:
                raise _not_found()
            return history.current

    def list(self, user_id: str) -> list[dict]:
        with self.lock:
            records = (self._events[i].current for i in self._by_user.get(user_id, []))
            return [r for r in records if r is not None]

    @property
    def seq(self) -> int:
        return self._seq

    def changed_between(self, user_id: str, since: int, upto: int) -> list[tuple[dict | None, dict | None]]:
        """(state at `since`, state at `upto`) of each of the user's events written in (since, upto]."""
        with self.lock:
            pairs = []
            for event_id in self._by_user.get(user_id, []):
                history = self._events[event_id]
                if any(since < s <= upto for s, _ in history.versions):
                    pairs.append((history.at(since), history.at(upto)))
            return pairs

    # --- delta token generations ------------------------------------------------------------------
    def delta_generation(self, user_id: str) -> int:
        with self.lock:
            return self._delta_generation.get(user_id, 0)

    def invalidate_delta_tokens(self, user_id: str) -> int:
        """Every delta token issued so far for the user stops working (410 on next use)."""
        with self.lock:
            self._delta_generation[user_id] = self._delta_generation.get(user_id, 0) + 1
            return self._delta_generation[user_id]
