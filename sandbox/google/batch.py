"""Google batch requests: one multipart/mixed POST carrying many API calls
(https://developers.google.com/calendar/api/guides/batch).

Each part is an HTTP request (path only); the answer is multipart/mixed with one HTTP response per part,
each under `Content-ID: <response-ID>` for the part's `<ID>`, with the usual few headers of a response
part (Content-Type, Content-Length, ETag when the resource has one: the guide's example response).
Outer headers apply to every part unless the part sets its own (Content-* excepted). Google splits a
batch into its calls before serving them and charges each against quota: here each part is served by
`sandbox.dispatch.Calls`, the very step a direct call takes, so it is counted and faulted alike. Parts
run concurrently, as Google does not serve them in order either.
"""
from __future__ import annotations

import re
import secrets
from http import HTTPStatus

from fastapi import APIRouter, Request, Response

from sandbox.dispatch import SCOPE_KEY, Answer
from sandbox.errors import google_error

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PHRASES = {status.value: status.phrase.encode() for status in HTTPStatus}


class BatchPart:
    __slots__ = ("body", "content_id", "headers", "method", "target")

    def __init__(self, content_id: str | None, method: str, target: str, headers: list, body: bytes):
        self.content_id, self.method, self.target, self.headers, self.body = content_id, method, target, headers, body


def _headers(block: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines as ASGI headers (lower-case names). Plain bytes operations: a regex here cost more
    than the call it parses. Folded lines (RFC 5322 continuations, rare) take the slower loop."""
    if b"\n " in block or b"\n\t" in block:
        return _folded_headers(block)
    headers = []
    for line in block.split(b"\n"):
        name, colon, value = line.partition(b":")
        if colon:  # no space may come between a name and its colon (RFC 9112 section 5.1)
            headers.append((name.lower(), value.strip()))
    return headers


def _folded_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip()).strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return headers


def _content_id(part_head: bytes) -> str | None:
    """The part's Content-ID, the one part header the answer uses (the server ignores the others, as the
    guide says): found without splitting the part's headers when it starts a line and is not folded."""
    at = part_head.lower().find(b"content-id:")
    if at == -1:
        return None
    end = part_head.find(b"\n", at)
    if end == -1:
        end = len(part_head)
    if (at and part_head[at - 1] != 10) or part_head[end + 1:end + 2] in (b" ", b"\t"):
        return next((v.decode() for k, v in _headers(part_head) if k == b"content-id"), None)
    return part_head[at + 11:end].strip().decode()


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """(head, rest) at the first blank line, LF or CRLF."""
    lf, crlf = data.find(b"\n\n"), data.find(b"\n\r\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return data[:crlf].removesuffix(b"\r"), data[crlf + 3:]
    if lf != -1:
        return data[:lf].removesuffix(b"\r"), data[lf + 2:]
    return data, b""


def _malformed(why: str):
    return google_error(400, "invalid", f"Malformed batch request: {why}")


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
        content_id = _content_id(part_head)
        request_head, request_body = _split_head(request)
        request_line, _, header_block = request_head.partition(b"\n")
        fields = request_line.decode("utf-8", "replace").split()
        if len(fields) < 2 or not fields[1].startswith("/"):
            raise _malformed("each part must hold an HTTP request line with a path, as 'POST /calendar/v3/...'.")
        headers = _headers(header_block)
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.isdigit():
            request_body = request_body[: int(length)]
        else:
            request_body = request_body.removesuffix(b"\n").removesuffix(b"\r")
        parts.append(BatchPart(content_id, fields[0].upper(), fields[1], headers, request_body))
    return parts


_PART = (b"--%s\r\nContent-Type: application/http\r\nContent-ID: <response-%s>\r\n\r\n"
         b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s\r\n")


def _response_part(boundary: bytes, part: BatchPart, answer: Answer) -> bytes:
    """One part of the answer as the guide's example has it: `Content-Type: application/http`,
    `Content-ID: <response-ID>`, then the call's status line, its headers (Content-Type, ETag when the
    resource has one, Content-Length) and body."""
    content_id = part.content_id or ""
    inner = content_id[1:-1] if content_id.startswith("<") and content_id.endswith(">") else content_id
    # ASGI header names are lower-case: the call's own Content-Length is left out for the one written here
    headers = b"".join(k + b": " + v + b"\r\n" for k, v in answer.headers if k != b"content-length")
    return _PART % (boundary, inner.encode(), answer.status, _PHRASES.get(answer.status, b""), headers,
                    len(answer.body), answer.body)


def _with_outer(own: list[tuple[bytes, bytes]], outer: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A part's headers, then the batch's headers it does not set itself."""
    if not outer:
        return own
    names = dict(own)  # built in C: a set comprehension here cost a few percent of a part
    return own + [(name, value) for name, value in outer if name not in names]


def _error_answer(error) -> Answer:
    return Answer(error.response.status_code, error.response.raw_headers, error.response.body)


def router(sandbox, api: str, max_parts: int) -> APIRouter:
    """The batch endpoint of one API (`/batch/calendar/v3`); its parts must all call that API."""
    endpoint = APIRouter(tags=["google batch"])
    api_prefix = f"/{api}/"
    wrong_api = _error_answer(google_error(400, "invalid", f"Batch parts must call {api_prefix}."))
    backend_error = _error_answer(google_error(500, "backendError", "Backend Error"))

    async def batch(request: Request):
        parts = parse_batch(await request.body(), request.headers.get("content-type", ""))
        if len(parts) > max_parts:
            raise google_error(400, "invalid", f"A batch request may contain at most {max_parts} calls.")
        if not parts:
            raise google_error(400, "invalid", "A batch request must contain at least one call.")
        calls = request.scope[SCOPE_KEY]
        outer_headers = [(k, v) for k, v in request.scope["headers"] if not k.startswith(b"content-") and k != b"host"]

        ours = [part for part in parts if part.target.startswith(api_prefix)]
        requests = [(part.method, part.target, _with_outer(part.headers, outer_headers), part.body) for part in ours]
        served = dict(zip(map(id, ours), await calls.call_all(request.scope, requests, backend_error)))
        answers = [served.get(id(part), wrong_api) for part in parts]
        boundary = f"batch_{secrets.token_urlsafe(12)}".encode()
        body = b"".join(_response_part(boundary, p, a) for p, a in zip(parts, answers)) + b"--" + boundary + b"--\r\n"
        return Response(body, media_type=f"multipart/mixed; boundary={boundary.decode()}")

    # A plain route, as the Calendar API's: the batch is served by the same direct step as its parts.
    endpoint.add_route(f"/batch/{api}", batch, methods=["POST"], include_in_schema=False)
    return endpoint
