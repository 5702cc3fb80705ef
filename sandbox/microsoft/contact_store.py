"""Every Graph contact and contact folder of every sandbox user, with the contacts' history, in memory.

As in event_store.py, each write appends a version (sequence number, record or None once deleted) to the
contact's history, so a delta round is answered as "the folder at the token's sequence" against "the
folder now". Each mailbox has its default Contacts folder (where `/users/{id}/contacts` lives), which
`/contactFolders` does not list, as Outlook lists the folders under it; created folders are its children
(https://learn.microsoft.com/graph/api/user-post-contactfolders).
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable

from sandbox.errors import graph_error
from sandbox.microsoft.contact_model import apply_contact_write, check_folder_name
from sandbox.microsoft.event_store import Change, History, now_stamp


def _not_found():
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _new_id() -> str:
    return "AAMkAGI" + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("=")


def default_folder_id(user_id: str) -> str:
    """Stable per user, in the AAMk... shape of Outlook's ids."""
    digest = hashlib.sha256(f"{user_id}:Contacts".encode()).digest()
    return "AQMkAGI" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


class ContactStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._listeners: list[Callable[[Change], None]] = []
        self.reset()

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """`listener(change)` hears of each contact write, after the lock is released (subscriptions)."""
        self._listeners.append(listener)

    def _publish(self, user_id: str, record: dict, change_type: str) -> None:
        change = Change(user_id, None, record["id"], change_type, record["changeKey"], "Contacts",
                        record["parentFolderId"])
        for listener in self._listeners:
            listener(change)

    def reset(self) -> None:
        with self.lock:
            self._seq = 0
            self._contacts: dict[str, History] = {}
            self._by_user: dict[str, list[str]] = {}
            self._folders: dict[str, dict[str, dict]] = {}  # user id -> folder id -> folder
            self._folder_log: dict[str, list[tuple[int, str, dict | None]]] = {}  # user id -> (seq, id, folder)

    @property
    def seq(self) -> int:
        return self._seq

    # --- folders ----------------------------------------------------------------------------------
    def folder_id(self, user_id: str, folder_ref: str | None) -> str:
        """The id of the named folder of the user (None: the default Contacts folder); 404 otherwise."""
        default = default_folder_id(user_id)
        if folder_ref is None or folder_ref == default:
            return default
        with self.lock:
            if folder_ref not in self._folders.get(user_id, {}):
                raise _not_found()
        return folder_ref

    def folders(self, user_id: str) -> list[dict]:
        with self.lock:
            return list(self._folders.get(user_id, {}).values())

    def folder(self, user_id: str, folder_id: str) -> dict:
        with self.lock:
            found = self._folders.get(user_id, {}).get(folder_id)
        if found is None:
            raise _not_found()
        return found

    def create_folder(self, user_id: str, body) -> dict:
        name = check_folder_name(body)
        with self.lock:
            mine = self._folders.setdefault(user_id, {})
            if any(f["displayName"].lower() == name.lower() for f in mine.values()):
                # https://learn.microsoft.com/graph/api/user-post-contactfolders: names are unique per parent.
                raise graph_error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
            folder = {"id": _new_id(), "displayName": name, "parentFolderId": default_folder_id(user_id)}
            mine[folder["id"]] = folder
            self._log_folder(user_id, folder["id"], folder)
            return folder

    def delete_folder(self, user_id: str, folder_id: str) -> None:
        """The folder goes, and the contacts in it with it (they leave its delta as deleted)."""
        with self.lock:
            self.folder(user_id, folder_id)
            gone = self.list(user_id, folder_id)
            for contact in gone:
                self._append(contact["id"], None)
            del self._folders[user_id][folder_id]
            self._log_folder(user_id, folder_id, None)
        for contact in gone:
            self._publish(user_id, contact, "deleted")

    def _log_folder(self, user_id: str, folder_id: str, folder: dict | None) -> None:
        self._seq += 1
        self._folder_log.setdefault(user_id, []).append((self._seq, folder_id, folder))

    def folders_changed(self, user_id: str, since: int, upto: int) -> list[tuple[str, bool, dict | None]]:
        """(id, existed at `since`, the folder at `upto` or None) of each folder created or deleted in
        (since, upto] (contactFolder delta: https://learn.microsoft.com/graph/api/contactfolder-delta)."""
        with self.lock:
            before: dict[str, dict | None] = {}
            after: dict[str, dict | None] = {}
            for seq, folder_id, folder in self._folder_log.get(user_id, []):
                if seq <= since:
                    before[folder_id] = folder
                elif seq <= upto:
                    after[folder_id] = folder
            return [(i, before.get(i) is not None, folder) for i, folder in after.items()]

    # --- contacts ---------------------------------------------------------------------------------
    def _append(self, contact_id: str, record: dict | None) -> None:
        self._seq += 1
        self._contacts[contact_id].versions.append((self._seq, record))

    def create(self, user_id: str, folder_id: str, body) -> dict:
        record = apply_contact_write(None, body)
        stamp = now_stamp()
        record.update(id=_new_id(), createdDateTime=stamp, lastModifiedDateTime=stamp,
                      changeKey=secrets.token_urlsafe(18), parentFolderId=folder_id)
        with self.lock:
            self._contacts[record["id"]] = History(user_id)
            self._by_user.setdefault(user_id, []).append(record["id"])
            self._append(record["id"], record)
        self._publish(user_id, record, "created")
        return record

    def get(self, user_id: str, contact_id: str, folder_id: str | None = None) -> dict:
        """A live contact of the user, anywhere in the mailbox or (folder_id given) in that folder."""
        with self.lock:
            history = self._contacts.get(contact_id)
            record = history.current if history is not None and history.user_id == user_id else None
        if record is None or (folder_id is not None and record["parentFolderId"] != folder_id):
            raise _not_found()
        return record

    def update(self, user_id: str, contact_id: str, body, folder_id: str | None = None) -> dict:
        with self.lock:
            record = apply_contact_write(self.get(user_id, contact_id, folder_id), body)
            record.update(lastModifiedDateTime=now_stamp(), changeKey=secrets.token_urlsafe(18))
            self._append(contact_id, record)
        self._publish(user_id, record, "updated")
        return record

    def delete(self, user_id: str, contact_id: str, folder_id: str | None = None) -> None:
        with self.lock:
            record = self.get(user_id, contact_id, folder_id)
            self._append(contact_id, None)
        self._publish(user_id, record, "deleted")

    def list(self, user_id: str, folder_id: str) -> list[dict]:
        with self.lock:
            records = (self._contacts[i].current for i in self._by_user.get(user_id, []))
            return [r for r in records if r is not None and r["parentFolderId"] == folder_id]

    def changed_in_folder(self, user_id: str, folder_id: str, since: int, upto: int) -> list[tuple[str, bool, dict | None]]:
        """(id, was in the folder at `since`, the contact at `upto` if in the folder then) for each of the
        user's contacts written in (since, upto] that was or is in the folder."""
        with self.lock:
            changes = []
            for contact_id in self._by_user.get(user_id, []):
                history = self._contacts[contact_id]
                if not any(since < s <= upto for s, _ in history.versions):
                    continue
                before, after = history.at(since), history.at(upto)
                was_in = before is not None and before["parentFolderId"] == folder_id
                now_in = after if after is not None and after["parentFolderId"] == folder_id else None
                if was_in or now_in is not None:
                    changes.append((contact_id, was_in, now_in))
            return changes
