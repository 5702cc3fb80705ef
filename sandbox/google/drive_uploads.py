"""Media uploads under /upload/drive/v3/files: simple, multipart and resumable.

Protocol from https://developers.google.com/workspace/drive/api/guides/manage-uploads:
- `uploadType=media`: the body is the content, its Content-Type the file's type, no metadata.
- `uploadType=multipart`: `multipart/related`, a JSON metadata part first, then the media part.
- `uploadType=resumable`: the first request carries the metadata (JSON, possibly empty) and
  `X-Upload-Content-Type`/`X-Upload-Content-Length`; the answer is 200 with the session URI in `Location`.
  Each PUT to it sends bytes with `Content-Range: bytes first-last/total` (`*` for an unknown total);
  a PUT with `Content-Range: bytes */total` asks how far the upload got. While incomplete the answer is
  308 with `Range: bytes=0-N` (no Range when nothing arrived yet); the PUT completing it gets 200 (or 201)
  with the file. Chunks other than the last must be multiples of 256 KiB. An unknown session is 404.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field

from sandbox.errors import google_error

CHUNK_MULTIPLE = 256 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def bad_upload(message: str):
    return google_error(400, "badContent", message)


def parse_json_meta(raw: bytes) -> dict:
    if not raw.strip():
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise google_error(400, "parseError", "Parse Error")
    return meta


def _part(raw: bytes) -> tuple[dict[str, str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        raise bad_upload("A multipart upload part has no header block.")
    headers = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers, body


def parse_multipart(body: bytes, content_type: str) -> tuple[dict, bytes, str]:
    """(metadata, content, content type) of a multipart/related upload."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise bad_upload("A multipart upload must be multipart/related with a boundary.")
    delimiter = b"--" + match.group(1).encode()
    pieces = body.split(delimiter)
    # pieces: preamble, part, part, "--" epilogue. Each part ends with the CRLF that precedes the next delimiter.
    parts = [p for p in pieces[1:] if not p.startswith(b"--")]
    if len(parts) != 2:
        raise bad_upload("A multipart upload has exactly two parts: metadata, then media.")
    meta_headers, meta_raw = _part(parts[0].lstrip(b"\r\n"))
    media_headers, media = _part(parts[1].lstrip(b"\r\n"))
    if not meta_headers.get("content-type", "").startswith("application/json"):
        raise bad_upload("The first part of a multipart upload must be application/json metadata.")
    media = media[:-2] if media.endswith(b"\r\n") else media[:-1] if media.endswith(b"\n") else media
    return parse_json_meta(meta_raw), media, media_headers.get("content-type", "application/octet-stream")


@dataclass
class Session:
    id: str
    account_id: str
    client_id: str
    meta: dict
    content_type: str | None
    total: int | None
    file_id: str | None  # set for an update of an existing file
    fields: str | None
    received: bytearray = field(default_factory=bytearray)


class Sessions:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions: dict[str, Session] = {}

    def reset(self) -> None:
        with self.lock:
            self.sessions.clear()

    def open(self, account_id: str, client_id: str, meta: dict, headers, file_id: str | None,
             fields: str | None) -> Session:
        total = headers.get("x-upload-content-length")
        session = Session("sb-" + secrets.token_urlsafe(18), account_id, client_id, meta,
                          headers.get("x-upload-content-type"), int(total) if total and total.isdigit() else None,
                          file_id, fields)
        with self.lock:
            self.sessions[session.id] = session
        return session

    def get(self, upload_id: str | None, account_id: str) -> Session:
        session = self.sessions.get(upload_id or "")
        if session is None or session.account_id != account_id:
            raise google_error(404, "notFound", "No such upload session.")
        return session

    def put(self, session: Session, content_range: str | None, body: bytes) -> bool:
        """Take one PUT; True when the upload is complete."""
        if content_range is None:  # the whole content in one PUT
            first, total = 0, len(body)
        else:
            match = _RANGE.match(content_range.strip())
            if match is None:
                raise bad_upload(f"Invalid Content-Range: {content_range}")
            total = None if match.group(3) == "*" else int(match.group(3))
            if match.group(1) is None:  # `bytes */total`: a status query
                if total is not None:
                    session.total = total
                return session.total is not None and len(session.received) >= session.total
            first, last = int(match.group(1)), int(match.group(2))
            if last - first + 1 != len(body):
                raise bad_upload("The Content-Range does not match the bytes sent.")
        if total is not None:
            session.total = total
        if first != len(session.received):
            return False  # not where the upload stands: the 308's Range tells the client where to resume
        session.received.extend(body)
        complete = session.total is not None and len(session.received) >= session.total
        if not complete and len(body) % CHUNK_MULTIPLE:
            del session.received[first:]
            raise bad_upload(f"Chunks other than the last must be a multiple of {CHUNK_MULTIPLE} bytes.")
        return complete

    def finish(self, session: Session) -> None:
        with self.lock:
            self.sessions.pop(session.id, None)
