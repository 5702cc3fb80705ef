"""Calendar batch requests as googleapiclient.http.BatchHttpRequest sends them."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import googleapiclient.http
import httpx
import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.sandbox.google_clients import ann, reason_of, timed  # noqa: F401

INSERT_ROUTE = "POST /calendar/v3/calendars/{calendarId}/events"


def batch_of_inserts(sandbox, user, count: int, results: dict, first_id: int = 0) -> BatchHttpRequest:
    def done(request_id, response, exception):
        results[request_id] = exception or response

    batch = BatchHttpRequest(callback=done, batch_uri=f"{sandbox.http_url}/batch/calendar/v3")
    for n in range(first_id, first_id + count):
        batch.add(user.calendar.events().insert(calendarId="primary", body=timed(f"e{n}", id=f"crm{n:06d}")),
                  request_id=str(n))
    return batch


def counters(sandbox) -> dict:
    return httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()


def test_batch_of_50_inserts_creates_them_and_counts_each_call(sandbox, ann):
    results: dict = {}
    batch_of_inserts(sandbox, ann, 50, results).execute()
    assert sorted(results, key=int) == [str(n) for n in range(50)]
    assert all(r["id"] == f"crm{int(k):06d}" for k, r in results.items())
    listed = ann.calendar.events().list(calendarId="primary").execute()["items"]
    assert len(listed) == 50
    assert counters(sandbox)["calls"][INSERT_ROUTE] == 50


def test_each_part_answers_for_itself(sandbox, ann):
    ann.calendar.events().insert(calendarId="primary", body=timed(id="crm000001")).execute()
    results: dict = {}
    batch_of_inserts(sandbox, ann, 3, results).execute()
    assert isinstance(results["1"], HttpError) and results["1"].status_code == 409
    assert results["0"]["id"] == "crm000000" and results["2"]["id"] == "crm000002"


def test_parts_are_faulted_like_direct_calls(sandbox, ann):
    ann.calendar.calendarList().list().execute()  # refresh the token first
    rule = {"method": "POST", "route": "/calendar/v3/calendars/*/events", "rate_429": 0.5, "seed": 7}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    results: dict = {}
    batch_of_inserts(sandbox, ann, 40, results).execute()
    refused = [r for r in results.values() if isinstance(r, HttpError)]
    assert refused and len(refused) < 40
    assert {(r.status_code, reason_of(r)) for r in refused} == {(429, "rateLimitExceeded")}
    assert sum(counters(sandbox)["injected"].values()) == len(refused)


def test_more_than_1000_calls_are_refused(sandbox, ann, monkeypatch):
    # The client itself stops at 1000; lift its guard to send what a careless client could.
    monkeypatch.setattr(googleapiclient.http, "MAX_BATCH_LIMIT", 2000)
    with pytest.raises(HttpError) as raised:
        batch_of_inserts(sandbox, ann, 1001, {}).execute()
    assert raised.value.status_code == 400
    assert INSERT_ROUTE not in counters(sandbox)["calls"]


def _raw_batch(sandbox, user, body: bytes, boundary: str = "b0") -> httpx.Response:
    user.calendar.calendarList().list().execute()  # refresh the token first
    return httpx.post(f"{sandbox.http_url}/batch/calendar/v3", content=body, headers={
        "content-type": f'multipart/mixed; boundary="{boundary}"',
        "authorization": f"Bearer {user.credentials.token}"})


def test_a_part_without_a_request_line_refuses_the_batch_in_googles_error_shape(sandbox, ann):
    body = b"--b0\nContent-Type: application/http\nContent-ID: <1>\n\nnot a request\n--b0--\n"
    answer = _raw_batch(sandbox, ann, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] == "invalid" and "request line" in error["message"]
    assert INSERT_ROUTE not in counters(sandbox)["calls"]


def test_crlf_parts_and_folded_headers_are_read_and_the_batch_token_applies(sandbox, ann):
    event = b'{"id": "crm000042", "summary": "folded", "start": {"dateTime": "2030-01-07T10:00:00Z"},' \
            b' "end": {"dateTime": "2030-01-07T11:00:00Z"}}'
    body = (b"--b0\r\nContent-Type: application/http\r\nContent-ID: <x1>\r\n\r\n"
            b"POST /calendar/v3/calendars/primary/events HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"X-Folded: first\r\n second\r\nContent-Length: " + str(len(event)).encode() + b"\r\n\r\n"
            + event + b"\r\n--b0--\r\n")
    answer = _raw_batch(sandbox, ann, body)
    assert answer.status_code == 200
    assert b"Content-ID: <response-x1>" in answer.content and b"HTTP/1.1 200 OK" in answer.content
    assert ann.calendar.events().get(calendarId="primary", eventId="crm000042").execute()["summary"] == "folded"


def test_a_faulted_part_fails_alone_and_every_part_is_counted_once(sandbox, ann):
    ann.calendar.calendarList().list().execute()
    rule = {"method": "GET", "route": "/calendar/v3/calendars/*/events/*", "rate_5xx": 1.0}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    results: dict = {}

    def done(request_id, response, exception):
        results[request_id] = exception or response

    batch = BatchHttpRequest(callback=done, batch_uri=f"{sandbox.http_url}/batch/calendar/v3")
    batch.add(ann.calendar.events().insert(calendarId="primary", body=timed(id="crm000007")), request_id="insert")
    batch.add(ann.calendar.events().get(calendarId="primary", eventId="crm000007"), request_id="get")
    batch.execute()
    assert results["insert"]["id"] == "crm000007"
    assert isinstance(results["get"], HttpError) and results["get"].status_code == 503
    assert reason_of(results["get"]) == "backendError"
    calls = counters(sandbox)["calls"]
    assert calls[INSERT_ROUTE] == 1 and calls["GET /calendar/v3/calendars/{calendarId}/events/{eventId}"] == 1
    assert calls["POST /batch/calendar/v3"] == 1


def test_the_content_id_is_read_wherever_and_however_the_part_header_puts_it():
    from sandbox.google.batch import parse_batch

    request = b"GET /calendar/v3/calendars/primary/events/x HTTP/1.1\n\n"
    heads = [b"Content-Type: application/http\nContent-ID: <a>", b"content-id:<b>\nContent-Type: application/http",
             b"X-Content-ID: <no>\nContent-ID: <c>", b"Content-ID:\n <d>", b"Content-Type: application/http"]
    body = b"".join(b"--b0\n" + head + b"\n\n" + request for head in heads) + b"--b0--\n"
    parts = parse_batch(body, "multipart/mixed; boundary=b0")
    assert [p.content_id for p in parts] == ["<a>", "<b>", "<c>", "<d>", None]
    assert {(p.method, p.target) for p in parts} == {("GET", "/calendar/v3/calendars/primary/events/x")}
