"""A Calendar batch part answers byte for byte what the same call answers on its own connection
(https://developers.google.com/workspace/calendar/api/guides/batch: "each part contains a complete HTTP
response", in the example response with its Content-Type, Content-Length and ETag)."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import json

import httpx
import orjson

from tests.sandbox.google_clients import ann, timed  # noqa: F401

EVENTS = "/calendar/v3/calendars/primary/events"


class Part:
    def __init__(self, content_id: str, status: int, headers: dict[str, str], body: bytes):
        self.content_id, self.status, self.headers, self.body = content_id, status, headers, body


def _split_headers(block: bytes) -> dict[str, str]:
    lines = block.decode().split("\r\n")
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines) if name}


def parse_answer(answer: httpx.Response) -> list[Part]:
    """The multipart/mixed answer, read strictly: CRLF lines, each part's length as its Content-Length says."""
    boundary = answer.headers["content-type"].split("boundary=")[1].encode()
    parts = []
    for chunk in answer.content.split(b"--" + boundary)[1:-1]:
        part_head, _, response = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        response_head, _, rest = response.partition(b"\r\n\r\n")
        status_line, _, header_block = response_head.partition(b"\r\n")
        headers = _split_headers(header_block)
        body = rest[:int(headers["content-length"])]
        assert rest[len(body):] == b"\r\n"
        parts.append(Part(_split_headers(part_head)["content-id"], int(status_line.split()[1]), headers, body))
    assert answer.content.endswith(b"--" + boundary + b"--\r\n")
    return parts


def batch(sandbox, user, calls: list[tuple[str, str, dict | None]], headers: dict | None = None) -> list[Part]:
    """`calls` as (method, path with query, JSON body or None), Content-IDs item0, item1..."""
    chunks = []
    for n, (method, target, body) in enumerate(calls):
        content = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(content)}"]
        chunks.append(b"--b0\r\nContent-Type: application/http\r\nContent-ID: <item%d>\r\n\r\n" % n
                      + "\r\n".join(lines).encode() + b"\r\n\r\n" + content + b"\r\n")
    answer = httpx.post(f"{sandbox.http_url}/batch/calendar/v3", content=b"".join(chunks) + b"--b0--\r\n", headers={
        "content-type": "multipart/mixed; boundary=b0", "authorization": f"Bearer {token(user)}"})
    assert answer.status_code == 200
    return parse_answer(answer)


def token(user) -> str:
    if not user.credentials.token:
        user.calendar.calendarList().list().execute()  # the client refreshes its token for real
    return user.credentials.token


def direct(sandbox, user, method: str, target: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, f"{sandbox.http_url}{target}", json=body,
                         headers={"authorization": f"Bearer {token(user)}"})


def same_answer(part: Part, alone: httpx.Response) -> None:
    assert part.status == alone.status_code
    assert part.body == alone.content
    for name in ("content-type", "etag"):
        assert part.headers.get(name) == alone.headers.get(name), name


def test_a_batched_read_answers_what_the_read_answers_alone(sandbox, ann):
    event = direct(sandbox, ann, "POST", EVENTS, timed(id="crm000001")).json()
    read, missing = batch(sandbox, ann, [("GET", f"{EVENTS}/crm000001", None), ("GET", f"{EVENTS}/crm000404", None)])
    assert [read.content_id, missing.content_id] == ["<response-item0>", "<response-item1>"]
    same_answer(read, direct(sandbox, ann, "GET", f"{EVENTS}/crm000001"))
    assert read.headers["etag"] == event["etag"]
    same_answer(missing, direct(sandbox, ann, "GET", f"{EVENTS}/crm000404"))
    assert orjson.loads(missing.body)["error"]["errors"][0]["reason"] == "notFound"


def test_batched_writes_answer_the_stored_event_with_its_etag(sandbox, ann):
    for n in (1, 2, 3):
        direct(sandbox, ann, "POST", EVENTS, timed(id=f"crm00000{n}")).raise_for_status()
    inserted, patched, updated, deleted = batch(sandbox, ann, [
        ("POST", f"{EVENTS}?sendUpdates=none", timed(id="crm000004")),
        ("PATCH", f"{EVENTS}/crm000001?sendUpdates=all", {"summary": "patched"}),
        ("PUT", f"{EVENTS}/crm000002", timed("updated")),
        ("DELETE", f"{EVENTS}/crm000003?sendNotifications=false", None)])
    for part, event_id in ((inserted, "crm000004"), (patched, "crm000001"), (updated, "crm000002")):
        stored = direct(sandbox, ann, "GET", f"{EVENTS}/{event_id}")
        assert part.status == 200 and part.body == stored.content
        assert part.headers["etag"] == stored.headers["etag"] == orjson.loads(part.body)["etag"]
        assert part.headers["content-type"] == stored.headers["content-type"] == "application/json; charset=UTF-8"
    assert (deleted.status, deleted.body, deleted.headers.get("etag")) == (204, b"", None)
    log = httpx.get(f"{sandbox.http_url}/_sandbox/google/accounts/{ann.id}/sent-updates").json()
    assert [(e["method"], e["eventId"], e["sendUpdates"]) for e in log[-4:]] == [
        ("events.insert", "crm000004", "none"), ("events.patch", "crm000001", "all"),
        ("events.update", "crm000002", None), ("events.delete", "crm000003", "none")]


def test_failed_batched_writes_carry_the_error_body_the_call_gets_alone(sandbox, ann):
    direct(sandbox, ann, "POST", EVENTS, timed(id="crm000001")).raise_for_status()
    direct(sandbox, ann, "DELETE", f"{EVENTS}/crm000001").raise_for_status()
    duplicate, gone, invalid = batch(sandbox, ann, [
        ("POST", EVENTS, timed(id="crm000001")),
        ("DELETE", f"{EVENTS}/crm000001", None),
        ("POST", EVENTS, timed(end="2030-01-07T09:00:00"))])
    assert (duplicate.status, gone.status, invalid.status) == (409, 410, 400)
    same_answer(duplicate, direct(sandbox, ann, "POST", EVENTS, timed(id="crm000001")))
    same_answer(gone, direct(sandbox, ann, "DELETE", f"{EVENTS}/crm000001"))
    same_answer(invalid, direct(sandbox, ann, "POST", EVENTS, timed(end="2030-01-07T09:00:00")))
    assert orjson.loads(invalid.body)["error"]["errors"][0]["reason"] == "timeRangeEmpty"


def test_if_match_is_honoured_per_part(sandbox, ann):
    event = direct(sandbox, ann, "POST", EVENTS, timed(id="crm000001")).json()
    fresh, stale = batch(sandbox, ann, [("PATCH", f"{EVENTS}/crm000001", {"summary": "first"})],
                         headers={"If-Match": event["etag"]}) + batch(
        sandbox, ann, [("PATCH", f"{EVENTS}/crm000001", {"summary": "second"})], headers={"If-Match": event["etag"]})
    assert fresh.status == 200 and orjson.loads(fresh.body)["summary"] == "first"
    assert stale.status == 412 and orjson.loads(stale.body)["error"]["errors"][0]["reason"] == "conditionNotMet"
