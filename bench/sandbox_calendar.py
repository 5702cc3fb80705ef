"""Google Calendar sandbox throughput: event inserts per second through google-api-python-client.

The sandbox runs as its own process (`python -m sandbox`), so client and server do not share a GIL.
Measured, each with the CPU time the server and the client spent per insert:
- single inserts one after another, and from a few threads (each with its own httplib2.Http inside an
  AuthorizedHttp, as the client requires);
- BatchHttpRequest batches of 50 and of 1000;
- the server alone on batches: the very bytes googleapiclient sent, replayed over http.client, so the
  client library's own MIME work (most of a batched insert's cost) is out of the figure.
`server_capacity_per_s` is 1e6 / server CPU microseconds per insert: what one core of the server does
when the client keeps up. Targets on a 2-core machine: >= 1,000 single and >= 5,000 batched inserts/s.
"""
from __future__ import annotations

import http.client
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

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
REPLAYED_BATCHES = 10

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


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Meter:
    """Rate of one phase, and CPU per insert on both sides of the connection."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def measure(self, count: int, work: Callable[[], None]) -> dict:
        server, client, wall = _process_cpu_s(self.server_pid), time.process_time(), time.perf_counter()
        work()
        wall = time.perf_counter() - wall
        server_us = (_process_cpu_s(self.server_pid) - server) / count * 1e6
        figures = {"inserts_per_s": round(count / wall),
                   "client_cpu_us_per_insert": round((time.process_time() - client) / count * 1e6)}
        if server_us:
            figures["server_cpu_us_per_insert"] = round(server_us)
            figures["server_capacity_per_s"] = round(1e6 / server_us)
        return figures


def _calendar(base_url: str, credentials: Credentials, http=None):
    """A client with its own connection: httplib2.Http is not thread-safe."""
    http = http or google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
    return build("calendar", "v3", http=http, static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": f"{base_url}/calendar/v3/"})


def _insert(calendar, count: int) -> None:
    events = calendar.events()
    for _ in range(count):
        events.insert(calendarId="primary", body=_event(), sendUpdates="none").execute()


def _threaded(base_url: str, credentials: Credentials) -> Callable[[], None]:
    clients = [_calendar(base_url, credentials) for _ in range(THREADS)]

    def work():
        threads = [threading.Thread(target=_insert, args=(c, THREADED_INSERTS // THREADS)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return work


class _RecordingHttp:
    """Sends through a real AuthorizedHttp and keeps each body: the batch bytes the client produced."""

    def __init__(self, http):
        self.http, self.sent = http, []

    def request(self, uri, method="GET", body=None, headers=None, **kwargs):
        self.sent.append((headers, body))
        return self.http.request(uri, method=method, body=body, headers=headers, **kwargs)


def _batched(base_url: str, credentials: Credentials, size: int, recorder: _RecordingHttp) -> Callable[[], None]:
    """Building each batch is part of the work: a sync engine pays for it too. A fresh connection: the
    server drops idle ones after a few seconds, and httplib2 does not resend a large body on a dead one."""
    events = _calendar(base_url, credentials).events()
    failures: list = []

    def note(_, __, exception):
        if exception is not None:
            failures.append(exception)

    def work():
        for _ in range(BATCHED_INSERTS // size):
            batch = BatchHttpRequest(callback=note, batch_uri=f"{base_url}/batch/calendar/v3")
            for _ in range(size):
                batch.add(events.insert(calendarId="primary", body=_event(), sendUpdates="none"))
            batch.execute(http=recorder)
        if failures:
            raise RuntimeError(f"{len(failures)} batched inserts failed, first: {failures[0]}")

    return work


def _replay(base_url: str, headers: dict, body: str) -> Callable[[], None]:
    """The server alone: one recorded batch sent again and again, each time under fresh event ids of the
    same length (`bench` -> `rNNNN`), so every call is a real insert."""
    address = urlsplit(base_url)
    payload = body.encode() if isinstance(body, str) else body
    copies = [payload.replace(b'"id": "bench', f'"id": "r{k:04d}'.encode()) for k in range(REPLAYED_BATCHES)]

    def work():
        connection = http.client.HTTPConnection(address.hostname, address.port)
        for copy in copies:
            connection.request("POST", "/batch/calendar/v3", copy, headers)
            answer = connection.getresponse()
            if answer.status != 200 or answer.read().count(b"HTTP/1.1 200") != copy.count(b"POST /"):
                raise RuntimeError(f"replayed batch failed: {answer.status}")
        connection.close()

    return work


def run() -> dict:
    http_port, https_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    env = {"SANDBOX_HTTP_PORT": str(http_port), "SANDBOX_HTTPS_PORT": str(https_port),
           "SANDBOX_TLS_DIR": tempfile.mkdtemp(prefix="sandbox-tls-")}
    with service("sandbox", env, ready_url=f"{base_url}/_sandbox/counters") as server:
        account = httpx.post(f"{base_url}/_sandbox/accounts",
                             json={"provider": "google", "email": "bench@example.com"}).json()
        credentials = Credentials(token=account["access_token"], refresh_token=account["refresh_token"],
                                  token_uri=f"{base_url}/token", client_id=account["client_id"],
                                  client_secret=account["client_secret"])
        meter = _Meter(server.pid)
        calendar = _calendar(base_url, credentials)
        _insert(calendar, 50)  # warm up: imports, connection, discovery document
        figures = {
            "single_sequential": meter.measure(SEQUENTIAL_INSERTS, lambda: _insert(calendar, SEQUENTIAL_INSERTS)),
            f"single_{THREADS}_threads": meter.measure(THREADED_INSERTS, _threaded(base_url, credentials)),
        }
        for size in BATCH_SIZES:
            recorder = _RecordingHttp(google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http()))
            count = BATCHED_INSERTS // size * size
            figures[f"batched_{size}"] = meter.measure(count, _batched(base_url, credentials, size, recorder))
            headers, body = recorder.sent[-1]
            figures[f"batched_{size}_server_only"] = meter.measure(
                REPLAYED_BATCHES * size, _replay(base_url, headers, body))
        figures["targets"] = {"single_inserts_per_s": 1_000, "batched_inserts_per_s": 5_000}
        return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
