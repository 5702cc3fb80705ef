"""changes.getStartPageToken and changes.list over an account's change log.

From https://developers.google.com/workspace/drive/api/guides/manage-changes and
.../reference/rest/v3/changes/list: a page token is where to resume; the start page token (which does not
expire) points after the latest change; each page has up to `pageSize` changes (1..1000, default 100) and
a `nextPageToken`, the last page instead a `newStartPageToken` for the next round. A file changed several
times since the token shows once, as it is now (the latest change); a deleted file is `removed: true`
without `file`, left out with `includeRemoved=false`; a trashed file is a change with `file.trashed`.
"""
from __future__ import annotations

from bisect import bisect_left

from sandbox.errors import google_error
from sandbox.google.drive_store import AccountDrive

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def start_page_token(drive: AccountDrive) -> str:
    return str(drive.seq + 1)


def _bad(name: str, value) -> Exception:
    return google_error(400, "invalid", f"Invalid Value: {value}", location=name)


def page_size(raw: str | None, default: int = DEFAULT_PAGE) -> int:
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise _bad("pageSize", raw) from None
    if not 1 <= size <= MAX_PAGE:
        raise google_error(400, "invalid", f"Invalid value '{raw}'. Values must be within the range: [1, 1000]",
                           location="pageSize")
    return size


def list_changes(drive: AccountDrive, token: str | None, size: int, include_removed: bool, file_json) -> dict:
    """One page of changes from `token`; `file_json(file)` renders a live file."""
    if token is None:
        raise google_error(400, "required", "Required parameter: pageToken", location="pageToken")
    if not token.isdigit() or not 1 <= int(token) <= drive.seq + 1:
        raise _bad("pageToken", token)
    at = bisect_left([c.seq for c in drive.log], int(token))
    changes: list[dict] = []
    while at < len(drive.log) and len(changes) < size:
        change = drive.log[at]
        at += 1
        if drive.latest.get(change.file_id) != change.seq:
            continue  # the file changed again later: it shows with that change
        file = drive.files.get(change.file_id)
        removed = file is None
        if removed and not include_removed:
            continue
        entry = {"kind": "drive#change", "changeType": "file", "time": change.time, "removed": removed,
                 "fileId": change.file_id}
        if not removed:
            entry["file"] = file_json(file)
        changes.append(entry)
    page: dict = {"kind": "drive#changeList", "changes": changes}
    remaining = [c for c in drive.log[at:] if drive.latest.get(c.file_id) == c.seq]
    if remaining:
        page["nextPageToken"] = str(remaining[0].seq)
    else:
        page["newStartPageToken"] = start_page_token(drive)
    return page
