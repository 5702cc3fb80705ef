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
