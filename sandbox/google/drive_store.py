"""Each account's Drive: its files and folders, their content, and the change log behind changes.list.

Behaviour from https://developers.google.com/workspace/drive/api/reference/rest/v3/files and
.../guides/manage-changes:
- My Drive items have one parent at most (https://developers.google.com/workspace/drive/api/guides/ref-single-parent):
  creating with several parents, or adding a parent without removing the old one, is 403 `cannotAddParent`.
- `appProperties` are private to the app (OAuth client) that set them, `properties` are public; writing
  null to a key removes it (https://developers.google.com/workspace/drive/api/guides/properties).
- Trashing a folder trashes what it holds (`trashed` true, `explicitlyTrashed` false for the children);
  deleting skips the trash and deletes a folder's descendants too; emptyTrash deletes every trashed item.
- Every change to a file is a change in the account's log; changes.list answers, from a page token, the
  latest change of each file changed since, a deleted file as `removed: true` with no `file`.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.errors import google_error

FOLDER = "application/vnd.google-apps.folder"
GOOGLE_APPS = "application/vnd.google-apps."
APP_DATA = "appDataFolder"


def not_found(file_id: str):
    # https://developers.google.com/workspace/drive/api/guides/handle-errors#notFound
    return google_error(404, "notFound", f"File not found: {file_id}.", location="fileId")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return "1" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    space: str
    created: str
    modified: str
    version: int = 1
    content: bytes | None = None
    description: str | None = None
    app_properties: dict[str, dict[str, str]] = field(default_factory=dict)  # OAuth client -> properties
    properties: dict[str, str] = field(default_factory=dict)
    explicitly_trashed: bool = False
    starred: bool = False


@dataclass
class Change:
    seq: int
    file_id: str
    time: str
    removed: bool


@dataclass
class AccountDrive:
    root_id: str
    app_data_id: str
    files: dict[str, DriveFile] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    latest: dict[str, int] = field(default_factory=dict)  # file id -> seq of its last change
    seq: int = 0


class DriveStore:
    def __init__(self):
        self.lock = threading.RLock()
        self.drives: dict[str, AccountDrive] = {}
        self._resource_ids = itertools.count(1)

    def reset(self) -> None:
        with self.lock:
            self.drives.clear()

    def drive(self, account_id: str) -> AccountDrive:
        drive = self.drives.get(account_id)
        if drive is None:
            drive = AccountDrive(root_id="0A" + _new_id()[:26], app_data_id="0B" + _new_id()[:26])
            now = _now()
            drive.files[drive.root_id] = DriveFile(drive.root_id, "My Drive", FOLDER, [], "drive", now, now)
            drive.files[drive.app_data_id] = DriveFile(drive.app_data_id, "Application Data", FOLDER, [],
                                                       APP_DATA, now, now)
            self.drives[account_id] = drive
        return drive

    # --- lookups ---------------------------------------------------------------------------------------
    def resolve(self, drive: AccountDrive, file_id: str) -> str:
        return {"root": drive.root_id, APP_DATA: drive.app_data_id}.get(file_id, file_id)

    def get(self, drive: AccountDrive, file_id: str) -> DriveFile:
        found = drive.files.get(self.resolve(drive, file_id))
        if found is None:
            raise not_found(file_id)
        return found

    def trashed(self, drive: AccountDrive, file: DriveFile) -> bool:
        seen = 0
        while file is not None and seen < 1000:
            if file.explicitly_trashed:
                return True
            file = drive.files.get(file.parents[0]) if file.parents else None
            seen += 1
        return False

    def descendants(self, drive: AccountDrive, folder_id: str) -> list[DriveFile]:
        found, frontier = [], [folder_id]
        while frontier:
            parent = frontier.pop()
            children = [f for f in drive.files.values() if parent in f.parents]
            found.extend(children)
            frontier.extend(c.id for c in children if c.mime_type == FOLDER)
        return found

    # --- writes ----------------------------------------------------------------------------------------
    def _record(self, drive: AccountDrive, file_id: str, removed: bool = False) -> None:
        drive.seq += 1
        drive.log.append(Change(drive.seq, file_id, _now(), removed))
        drive.latest[file_id] = drive.seq

    def _parent(self, drive: AccountDrive, parent_id: str) -> str:
        parent = self.get(drive, parent_id)
        if parent.mime_type != FOLDER:
            raise google_error(400, "badRequest", f"The parent {parent_id} is not a folder.", location="parents")
        return parent.id

    def create(self, account_id: str, client_id: str, meta: dict, content: bytes | None,
               content_type: str | None) -> DriveFile:
        with self.lock:
            drive = self.drive(account_id)
            parents = meta.get("parents") or ["root"]
            if not isinstance(parents, list):
                raise google_error(400, "invalid", "Invalid value for: parents", location="parents")
            if len(parents) > 1:
                raise google_error(403, "cannotAddParent", "Increasing the number of parents is not allowed.")
            parent_id = self._parent(drive, parents[0])
            now = _now()
            mime = meta.get("mimeType") or content_type or "application/octet-stream"
            file = DriveFile(_new_id(), meta.get("name") or "Untitled", mime, [parent_id],
                             drive.files[parent_id].space, meta.get("createdTime") or now, now,
                             content=content, description=meta.get("description"),
                             starred=bool(meta.get("starred")))
            _write_properties(file, client_id, meta)
            drive.files[file.id] = file
            self._record(drive, file.id)
            return file

    def update(self, account_id: str, client_id: str, file_id: str, meta: dict, add_parents: list[str],
               remove_parents: list[str], content: bytes | None = None,
               content_type: str | None = None) -> DriveFile:
        with self.lock:
            drive = self.drive(account_id)
            file = self._writable(drive, file_id)
            if "parents" in meta:
                # files.update: parents move only through addParents/removeParents.
                raise google_error(403, "fieldNotWritable", "The resource body includes fields which are not "
                                   "directly writable.", location="parents")
            parents = [p for p in file.parents if p not in {self.resolve(drive, r) for r in remove_parents}]
            for added in add_parents:
                parent_id = self._parent(drive, added)
                if parent_id == file.id or any(d.id == parent_id for d in self.descendants(drive, file.id)):
                    raise google_error(400, "badRequest", "A parent would create a cycle in the folder tree.")
                if parent_id not in parents:
                    parents.append(parent_id)
            if len(parents) > 1:
                raise google_error(403, "cannotAddParent", "Increasing the number of parents is not allowed.")
            file.parents = parents
            if "name" in meta and meta["name"] is not None:
                file.name = str(meta["name"])
            if "description" in meta:
                file.description = meta["description"]
            if "starred" in meta and meta["starred"] is not None:
                file.starred = bool(meta["starred"])
            if meta.get("mimeType") and file.mime_type != FOLDER:
                file.mime_type = meta["mimeType"]
            _write_properties(file, client_id, meta)
            if content is not None:
                file.content = content
                if content_type and not meta.get("mimeType") and file.mime_type == "application/octet-stream":
                    file.mime_type = content_type
            touched = [file]
            if "trashed" in meta and meta["trashed"] is not None and bool(meta["trashed"]) != file.explicitly_trashed:
                file.explicitly_trashed = bool(meta["trashed"])
                if file.mime_type == FOLDER:
                    touched += self.descendants(drive, file.id)
            file.version += 1
            file.modified = _now()
            for changed in touched:
                self._record(drive, changed.id)
            return file

    def _writable(self, drive, file_id: str) -> DriveFile:
        """The file a write names; the root and the appData folder belong to Drive, not to the user."""
        file = self.get(drive, file_id)
        if file.id in (drive.root_id, drive.app_data_id):
            raise google_error(403, "insufficientFilePermissions",
                               "The user does not have sufficient permissions for this file.")
        return file

    def delete(self, account_id: str, file_id: str) -> None:
        with self.lock:
            drive = self.drive(account_id)
            file = self._writable(drive, file_id)
            for gone in [file, *self.descendants(drive, file.id)]:
                drive.files.pop(gone.id, None)
                self._record(drive, gone.id, removed=True)

    def empty_trash(self, account_id: str) -> int:
        with self.lock:
            drive = self.drive(account_id)
            explicit = [f for f in drive.files.values() if f.explicitly_trashed]
            for file in explicit:
                if file.id in drive.files:
                    self.delete(account_id, file.id)
            return len(explicit)

    def next_resource_id(self) -> str:
        return f"drive-changes-{next(self._resource_ids)}"


def _write_properties(file: DriveFile, client_id: str, meta: dict) -> None:
    """Patch semantics for both maps: given keys replace, null removes, others stay."""
    for name, target in (("appProperties", file.app_properties.setdefault(client_id, {})),
                         ("properties", file.properties)):
        given = meta.get(name)
        if given is None:
            continue
        if not isinstance(given, dict):
            raise google_error(400, "invalid", f"Invalid value for: {name}", location=name)
        for key, value in given.items():
            if value is None:
                target.pop(key, None)
            elif len(key.encode()) + len(str(value).encode()) > 124:
                # https://developers.google.com/workspace/drive/api/guides/properties: key + value <= 124 bytes
                raise google_error(400, "invalid", f"The property {key} is larger than 124 bytes.", location=name)
            else:
                target[key] = str(value)


def file_view(drive: AccountDrive, store: DriveStore, file: DriveFile, client_id: str, owner: dict) -> dict:
    """The full File resource for one app: its own appProperties only."""
    resource = {
        "kind": "drive#file",
        "id": file.id,
        "name": file.name,
        "mimeType": file.mime_type,
        "parents": list(file.parents),
        "spaces": [file.space],
        "starred": file.starred,
        "trashed": store.trashed(drive, file),
        "explicitlyTrashed": file.explicitly_trashed,
        "createdTime": file.created,
        "modifiedTime": file.modified,
        "version": str(file.version),
        "ownedByMe": True,
        "owners": [owner],
        "appProperties": dict(file.app_properties.get(client_id, {})),
        "properties": dict(file.properties),
        "webViewLink": (f"https://drive.google.com/drive/folders/{file.id}" if file.mime_type == FOLDER
                        else f"https://drive.google.com/file/d/{file.id}/view?usp=drivesdk"),
    }
    if file.description is not None:
        resource["description"] = file.description
    if file.content is not None:
        resource["size"] = str(len(file.content))
        resource["md5Checksum"] = hashlib.md5(file.content).hexdigest()
    if not file.parents:
        del resource["parents"]
    return resource
