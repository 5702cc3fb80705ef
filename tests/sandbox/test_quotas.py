"""Provider quotas in the sandbox: off by default, on through `PUT /_sandbox/quotas`, answered as the
providers answer them (Google 403/429 in domain usageLimits, Graph 429 with Retry-After)."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import io
import threading

import httpx
import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, MediaIoBaseUpload

from tests.fixtures.net import wait_for
from tests.sandbox.drive_support import drive_client
from tests.sandbox.google_clients import ann, new_user, reason_of, timed  # noqa: F401
from tests.sandbox.microsoft_support import graph
from tests.sandbox.microsoft_support import new_user as new_graph_user


def set_quotas(sandbox, **providers) -> dict:
    answer = httpx.put(f"{sandbox.http_url}/_sandbox/quotas", json=providers)
    answer.raise_for_status()
    return answer.json()


def domain_of(error: HttpError) -> str:
    return error.error_details[0]["domain"]


def list_calendar(user):
    return user.calendar.events().list(calendarId="primary").execute()


def test_quotas_are_off_by_default_and_after_reset(sandbox, ann):
    settings = httpx.get(f"{sandbox.http_url}/_sandbox/quotas").json()
    assert settings["google"]["enabled"] is False and settings["graph"]["enabled"] is False
    assert settings["google"]["apis"]["calendar"] == {"per_user": 600, "per_project": 10_000, "window_s": 60.0}
    assert settings["graph"]["per_mailbox"] == 10_000 and settings["graph"]["concurrent_per_mailbox"] == 4
    set_quotas(sandbox, google={"enabled": False, "apis": {"calendar": {"per_user": 1}}})
    for _ in range(3):
        list_calendar(ann)  # limits set but not enabled: nothing refused
    set_quotas(sandbox, google={"enabled": True, "apis": {"calendar": {"per_user": 1}}})
    httpx.post(f"{sandbox.http_url}/_sandbox/reset").raise_for_status()
    assert httpx.get(f"{sandbox.http_url}/_sandbox/quotas").json()["google"]["enabled"] is False


def test_google_per_user_limit_is_403_user_rate_limit_exceeded(sandbox, ann):
    set_quotas(sandbox, google={"enabled": True, "apis": {"calendar": {"per_user": 3, "per_project": 100},
                                                          "drive": {"per_user": 100, "per_project": 100}}})
    for _ in range(3):
        list_calendar(ann)
    with pytest.raises(HttpError) as raised:
        list_calendar(ann)
    error = raised.value
    assert error.status_code == 403 and reason_of(error) == "userRateLimitExceeded"
    assert domain_of(error) == "usageLimits"
    bob = new_user(sandbox, "bob@example.com")  # another user of another client: its own quota
    list_calendar(bob)
    drive_client(sandbox, ann.account).files().list().execute()  # another API: its own quota


def test_google_per_project_limit_and_the_429_answer(sandbox):
    shared = {"client_id": "crm-app", "client_secret": "s"}
    users = []
    for email in ("p1@example.com", "p2@example.com"):
        httpx.post(f"{sandbox.http_url}/_sandbox/accounts",
                   json={"provider": "google", "email": email, **shared}).raise_for_status()
        users.append(new_user(sandbox, email))
    set_quotas(sandbox, google={"enabled": True, "apis": {"calendar": {"per_user": 100, "per_project": 3}}})
    list_calendar(users[0]), list_calendar(users[1]), list_calendar(users[0])
    with pytest.raises(HttpError) as raised:
        list_calendar(users[1])
    assert raised.value.status_code == 403 and reason_of(raised.value) == "rateLimitExceeded"

    set_quotas(sandbox, google={"enabled": True, "answer_status": 429,
                                "apis": {"calendar": {"per_user": 1, "per_project": 100}}})
    list_calendar(users[0])
    with pytest.raises(HttpError) as raised:
        list_calendar(users[0])
    assert raised.value.status_code == 429 and reason_of(raised.value) == "rateLimitExceeded"
    assert domain_of(raised.value) == "usageLimits"


def test_google_window_slides(sandbox, ann):
    set_quotas(sandbox, google={"enabled": True, "apis": {"calendar": {"per_user": 2, "window_s": 0.5}}})
    list_calendar(ann), list_calendar(ann)
    with pytest.raises(HttpError):
        list_calendar(ann)

    def admitted() -> bool:
        try:
            list_calendar(ann)
            return True
        except HttpError as error:
            assert error.status_code == 403
            return False

    wait_for(admitted, timeout_s=5, interval_s=0.1, what="a place in the sliding window")


def test_each_call_of_a_batch_is_charged(sandbox, ann):
    set_quotas(sandbox, google={"enabled": True, "apis": {"calendar": {"per_user": 3}}})
    statuses = []
    batch = BatchHttpRequest(callback=lambda _id, _response, error: statuses.append(error.status_code if error else 200),
                             batch_uri=f"{sandbox.http_url}/batch/calendar/v3")
    for index in range(5):
        batch.add(ann.calendar.events().insert(calendarId="primary", body=timed(f"e{index}")))
    batch.execute()
    assert sorted(statuses) == [200, 200, 200, 403, 403]


def test_graph_mailbox_rate_limit_is_429_with_retry_after(sandbox):
    ann, bob = new_graph_user(sandbox, "ann@contoso.test"), new_graph_user(sandbox, "bob@contoso.test")
    set_quotas(sandbox, graph={"enabled": True, "per_mailbox": 3, "window_s": 600})
    api = graph(sandbox, ann["access_token"])
    assert [api.get("/me/events").status_code for _ in range(2)] == [200, 200]
    assert api.get(f"/users/{ann['email']}/events").status_code == 200  # the same mailbox by address
    refused = api.get(f"/users/{ann['id']}/events")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "ApplicationThrottled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert graph(sandbox, bob["access_token"]).get("/me/events").status_code == 200  # another mailbox
    assert api.get("/users").status_code == 200  # the directory is not an Outlook resource


def test_graph_mailbox_concurrency_limit(sandbox):
    ann = new_graph_user(sandbox, "ann@contoso.test")
    set_quotas(sandbox, graph={"enabled": True, "concurrent_per_mailbox": 4})
    rule = {"method": "GET", "route": "/v1.0/me/events", "latency_ms": 1500}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    answers, lock = [], threading.Lock()
    start = threading.Barrier(6)

    def call():
        start.wait()
        with graph(sandbox, ann["access_token"]) as api:
            answer = api.get("/me/events")
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    refused = [a for a in answers if a.status_code == 429]
    assert sorted(a.status_code for a in answers) == [200] * 4 + [429] * 2
    assert refused[0].json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert refused[0].headers["Retry-After"] == "1"
    assert graph(sandbox, ann["access_token"]).get("/me/events").status_code == 200  # slots given back


def test_quota_exceeded_fault_kind(sandbox, ann):
    rule = {"method": "GET", "route": "/calendar/v3/calendars/*/events", "rate_quota_exceeded": 1.0}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    with pytest.raises(HttpError) as raised:
        list_calendar(ann)
    assert raised.value.status_code == 403 and reason_of(raised.value) == "quotaExceeded"
    assert domain_of(raised.value) == "usageLimits"
    assert "retry-after" not in raised.value.resp
    ann.calendar.events().insert(calendarId="primary", body=timed()).execute()  # other routes unaffected
    injected = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["injected"]
    assert injected == {"GET /calendar/v3/calendars/{calendarId}/events quotaExceeded": 1}

    ms = new_graph_user(sandbox, "ann@contoso.test")
    httpx.post(f"{sandbox.http_url}/_sandbox/faults",
               json={"route": "/v1.0/me/events", "rate_quota_exceeded": 1.0, "retry_after_s": 7}).raise_for_status()
    refused = graph(sandbox, ms["access_token"]).get("/me/events")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"


def test_drive_quota_charges_metadata_and_upload_calls_alike(sandbox, ann):
    drive = drive_client(sandbox, ann.account)
    set_quotas(sandbox, google={"enabled": True, "apis": {"drive": {"per_user": 2}}})
    drive.files().list().execute()
    drive.files().create(media_body=MediaIoBaseUpload(io.BytesIO(b"x"), mimetype="text/plain")).execute()
    with pytest.raises(HttpError) as raised:
        drive.files().list().execute()
    assert raised.value.status_code == 403 and reason_of(raised.value) == "userRateLimitExceeded"
    list_calendar(ann)  # Calendar keeps its own quota
