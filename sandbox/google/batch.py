"""Google batch requests: one multipart/mixed POST carrying many API calls
(https://developers.google.com/calendar/api/guides/batch).

Each part is an HTTP request (path only); the answer is multipart/mixed with one HTTP response per part,
each under `Content-ID: <response-ID>` for the part's `<ID>`. Outer headers apply to every part unless the
part sets its own (Content-* excepted). Google splits a batch into its calls before serving them and
charges each against quota: here each part goes back through the whole ASGI app, so the fault middleware
counts and faults it exactly like a direct call. Parts run concurrently, as Google does not serve them in
order either.
"""
from __future__ import annotations

import asyncio
import re
import secrets
from http import HTTPStatus
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response

from sandbox.errors import google_error

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class BatchPart:
    __slots__ = ("body", "content_id", "headers", "method", "target")

    def __init__(self, content_id: str | None, method: str, target: str, headers: list, body: bytes):
        self.content_id, self.method, self.target, self.headers, self.body = content_id, method, target, headers, body


def _headers(block: bytes) -> list[tuple[str, str]]:
    """Header lines of a part, unfolding RFC 5322 continuation lines."""
    lines: list[str] = []
    for line in block.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        elif line:
            lines.append(line)
    return [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    match = _BLANK_LINE.search(data)
    return (data, b"") if match is None else (data[: match.start()], data[match.end():])


def parse_batch(body: bytes, content_type: str) -> list[BatchPart]:
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/mixed") or match is None:
        raise google_error(400, "invalid", "Batch requests must be multipart/mixed with a boundary.")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        part_head, request = _split_head(chunk.lstrip(b"\r\n"))
        content_id = next((v for k, v in _headers(part_head) if k.lower() == "content-id"), None)
        request_head, request_body = _split_head(request)
        request_line, _, header_block = request_head.partition(b"\n")
        fields = request_line.decode("utf-8", "replace").split()
        if len(fields) < 2:
            raise google_error(400, "invalid", "Each batch part must hold an HTTP request.")
        headers = _headers(header_block)
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        if length is not None and length.isdigit():
            request_body = request_body[: int(length)]
        else:
            request_body = request_body.removesuffix(b"\n").removesuffix(b"\r")
        parts.append(BatchPart(content_id, fields[0].upper(), fields[1], headers, request_body))
    return parts


async def call_app(app, outer_scope: dict, part: BatchPart, outer_headers: list) -> tuple[int, list, bytes]:
    """Serve one part through the app as if it had come on its own connection."""
    path, _, query = part.target.partition("?")
    inner_names = {k.lower() for k, _ in part.headers}
    headers = [(k.lower().encode(), v.encode()) for k, v in part.headers]
    headers += [(k, v) for k, v in outer_headers if k.decode().lower() not in inner_names]
    scope = {
        "type": "http", "asgi": outer_scope.get("asgi", {"version": "3.0"}), "http_version": "1.1",
        "method": part.method, "scheme": outer_scope.get("scheme", "http"), "path": unquote(path),
        "raw_path": path.encode(), "query_string": query.encode(), "root_path": "", "headers": headers,
        "client": outer_scope.get("client"), "server": outer_scope.get("server"),
    }
    sent_body = False
    never = asyncio.get_running_loop().create_future()

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": part.body, "more_body": False}
        return await never  # the "client" stays connected until the answer is complete

    answer: dict = {"status": 500, "headers": [], "body": []}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            answer["body"].append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        never.cancel()
    return answer["status"], answer["headers"], b"".join(answer["body"])


def _response_part(boundary: str, part: BatchPart, status: int, headers: list, body: bytes) -> bytes:
    content_id = part.content_id or ""
    inner = content_id[1:-1] if content_id.startswith("<") and content_id.endswith(">") else content_id
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    lines = [f"--{boundary}", "Content-Type: application/http", f"Content-ID: <response-{inner}>", "",
             f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{k.decode()}: {v.decode()}" for k, v in headers if k.lower() != b"content-length"]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body + b"\r\n"


def router(sandbox, api: str, max_parts: int) -> APIRouter:
    """The batch endpoint of one API (`/batch/calendar/v3`); its parts must all call that API."""
    endpoint = APIRouter(tags=["google batch"])
    api_prefix = f"/{api}/"

    @endpoint.post(f"/batch/{api}")
    async def batch(request: Request):
        parts = parse_batch(await request.body(), request.headers.get("content-type", ""))
        if len(parts) > max_parts:
            raise google_error(400, "invalid", f"A batch request may contain at most {max_parts} calls.")
        if not parts:
            raise google_error(400, "invalid", "A batch request must contain at least one call.")
        outer_headers = [(k, v) for k, v in request.scope["headers"]
                         if not k.lower().startswith(b"content-") and k.lower() != b"host"]

        async def serve(part: BatchPart):
            if not part.target.startswith(api_prefix):
                error = google_error(400, "invalid", f"Batch parts must call {api_prefix}.").response
                return error.status_code, error.raw_headers, error.body
            try:
                return await call_app(request.app, request.scope, part, outer_headers)
            except Exception:  # noqa: BLE001 (a bug in one call must not take the other answers with it)
                error = google_error(500, "backendError", "Backend Error").response
                return error.status_code, error.raw_headers, error.body

        answers = await asyncio.gather(*(serve(part) for part in parts))
        boundary = f"batch_{secrets.token_urlsafe(12)}"
        body = b"".join(_response_part(boundary, p, *a) for p, a in zip(parts, answers)) + f"--{boundary}--\r\n".encode()
        return Response(body, media_type=f"multipart/mixed; boundary={boundary}")

    return endpoint
