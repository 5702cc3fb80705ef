"""Google Calendar sandbox throughput: event inserts per second through google-api-python-client.

The sandbox runs as its own process (`python -m sandbox`), so client and server do not share a GIL.
Measured: single inserts one after another, single inserts from a few threads (each with its own
httplib2.Http inside an AuthorizedHttp, as the client requires), and BatchHttpRequest batches of 50 and
of 1000. Targets on a 2-core machine: >= 1,000 single inserts/s, >= 5,000 batched inserts/s.
"""
from __future__ import annotations

import itertools
import tempfile
import threading
import time

import google_auth_httplib2
import httplib2
import httpx
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import BatchHttpRequest

from bench._infra import free_port, service

SEQUENTIAL_INSERTS = 2_000
THREADS = 4
THREADED_INSERTS = 4_000
BATCHED_INSERTS = 10_000
BATCH_SIZES = (50, 1000)

_ids = itertools.count()


def _event() -> dict:
    n = next(_ids)
    return {
        "id": f"bench{n:010d}", "summary": f"Meeting {n}", "location": "Room 1",
        "start": {"dateTime": "2030-01-07T10:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2030-01-07T11:00:00", "timeZone": "Europe/Paris"},
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]},
        "extendedProperties": {"private": {"crmId": str(n)}},
    }


def _calendar(base_url: str, credentials: Credentials):
    """A client with its own connection: httplib2.Http is not thread-safe."""
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
    return build("calendar", "v3", http=http, static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": f"{base_url}/calendar/v3/"})


def _insert(calendar, count: int) -> None:
    events = calendar.events()
    for _ in range(count):
        events.insert(calendarId="primary", body=_event(), sendUpdates="none").execute()


def _rate(count: int, work) -> float:
    started = time.perf_counter()
    work()
    return round(count / (time.perf_counter() - started))


def _threaded(base_url: str, credentials: Credentials) -> float:
    clients = [_calendar(base_url, credentials) for _ in range(THREADS)]
    per_thread = THREADED_INSERTS // THREADS

    def work():
        threads = [threading.Thread(target=_insert, args=(c, per_thread)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return _rate(per_thread * THREADS, work)


def _batched(base_url: str, credentials: Credentials, size: int) -> float:
    """Building each batch is part of the work: a sync engine pays for it too. A fresh connection: the
    server drops idle ones after a few seconds, and httplib2 does not resend a large body on a dead one."""
    calendar = _calendar(base_url, credentials)
    failures = []

    def note(_, __, exception):
        if exception is not None:
            failures.append(exception)

    events = calendar.events()

    def work():
        for _ in range(BATCHED_INSERTS // size):
            batch = BatchHttpRequest(callback=note, batch_uri=f"{base_url}/batch/calendar/v3")
            for _ in range(size):
                batch.add(events.insert(calendarId="primary", body=_event(), sendUpdates="none"))
            batch.execute()

    rate = _rate(BATCHED_INSERTS // size * size, work)
    if failures:
        raise RuntimeError(f"{len(failures)} batched inserts failed, first: {failures[0]}")
    return rate


def run() -> dict:
    http_port, https_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    env = {"SANDBOX_HTTP_PORT": str(http_port), "SANDBOX_HTTPS_PORT": str(https_port),
           "SANDBOX_TLS_DIR": tempfile.mkdtemp(prefix="sandbox-tls-")}
    with service("sandbox", env, ready_url=f"{base_url}/_sandbox/counters"):
        account = httpx.post(f"{base_url}/_sandbox/accounts",
                             json={"provider": "google", "email": "bench@example.com"}).json()
        credentials = Credentials(token=account["access_token"], refresh_token=account["refresh_token"],
                                  token_uri=f"{base_url}/token", client_id=account["client_id"],
                                  client_secret=account["client_secret"])
        calendar = _calendar(base_url, credentials)
        _insert(calendar, 50)  # warm up: imports, connection, discovery document
        figures = {
            "single_sequential_inserts_per_s": _rate(SEQUENTIAL_INSERTS, lambda: _insert(calendar, SEQUENTIAL_INSERTS)),
            f"single_inserts_per_s_{THREADS}_threads": _threaded(base_url, credentials),
        }
        for size in BATCH_SIZES:
            figures[f"batched_inserts_per_s_batch_{size}"] = _batched(base_url, credentials, size)
        figures["targets"] = {"single_inserts_per_s": 1_000, "batched_inserts_per_s": 5_000}
        return figures


if __name__ == "__main__":
    print(run())
