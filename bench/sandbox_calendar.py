"""Google Calendar sandbox throughput: event inserts per second through google-api-python-client.

The sandbox runs as its own process (`python -m sandbox`), so client and server do not share a GIL.
Measured, each with the CPU time the server and the client spent per insert:
- single inserts one after another, and from a few threads (each with its own httplib2.Http inside an
  AuthorizedHttp, as the client requires);
- BatchHttpRequest batches of 50 and of 1000;
- the server alone on batches: the very bytes googleapiclient sent, replayed over http.client, so the
  client library's own MIME work (most of a batched insert's cost) is out of the figure.
- single and batched through the client from 1 and from several client processes at once against the
  one sandbox (aggregate inserts/s), with the client's CPU per insert; for batches split into building
  the HttpRequests, serialising the batch (MIME) and parsing the multipart answer, each process building
  every request it sends inside the timed part.
`server_capacity_per_s` is 1e6 / server CPU microseconds per insert: what one core of the server does
when the client keeps up. Targets on a 2-core machine: >= 1,000 single and >= 5,000 batched inserts/s.
`summary` puts side by side what the server can do, what came through the real client, and what the
client library itself spends per insert: with client C and server S microseconds of CPU per insert, n
cores cannot pass n * 1e6 / (C + S) inserts/s, whichever side is faster.
"""
from __future__ import annotations

import http.client
import itertools
import multiprocessing
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
CLIENT_PROCESSES = (1, 2, 3)
PER_PROCESS_INSERTS = 5_000
PER_PROCESS_SINGLES = 1_500

_ids = itertools.count()
_parallel_runs = itertools.count()  # each parallel run's client processes take their own id ranges


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


class _TimedHttp:
    """Notes this thread's CPU clock around the HTTP exchange: what execute() spends before it is
    serialising the batch, what it spends after is parsing the answer."""

    def __init__(self, http):
        self.http, self.sent_at, self.answered_at = http, 0.0, 0.0

    def request(self, uri, method="GET", body=None, headers=None, **kwargs):
        self.sent_at = time.thread_time()
        try:
            return self.http.request(uri, method=method, body=body, headers=headers, **kwargs)
        finally:
            self.answered_at = time.thread_time()


def batched_client(base_url: str, token: dict, size: int, count: int, first_id: int, start=None) -> dict:
    """One client process's batched inserts, its CPU per insert split by phase (runs in a child process)."""
    global _ids
    _ids = itertools.count(first_id)  # ids unique across the client processes
    credentials = Credentials(**token)
    events = _calendar(base_url, credentials).events()
    http = _TimedHttp(google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http()))
    split = {"build": 0.0, "serialize": 0.0, "parse": 0.0}
    failures = []
    # the connection and the client's lazy imports (email's MIME generator and parser), outside the timed part
    warm_up = BatchHttpRequest(callback=lambda _, __, e: e and failures.append(e), batch_uri=f"{base_url}/batch/calendar/v3")
    warm_up.add(events.insert(calendarId="primary", body=_event(), sendUpdates="none"))
    warm_up.execute(http=http)
    if start is not None:
        start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(count // size):
        t0 = time.thread_time()
        batch = BatchHttpRequest(callback=lambda _, __, e: e and failures.append(e),
                                 batch_uri=f"{base_url}/batch/calendar/v3")
        for _ in range(size):
            batch.add(events.insert(calendarId="primary", body=_event(), sendUpdates="none"))
        t1 = time.thread_time()
        batch.execute(http=http)
        t2 = time.thread_time()
        split["build"] += t1 - t0
        split["serialize"] += http.sent_at - t1
        split["parse"] += t2 - http.answered_at
    done = count // size * size
    if failures:
        raise RuntimeError(f"{len(failures)} batched inserts failed, first: {failures[0]}")
    return {"inserts": done, "began": began, "ended": time.perf_counter(), "cpu_s": time.process_time() - cpu,
            **{f"{phase}_us_per_insert": round(seconds / done * 1e6) for phase, seconds in split.items()}}


def single_client(base_url: str, token: dict, size: int, count: int, first_id: int, start=None) -> dict:
    """One client process's single inserts, one after another (runs in a child process; `size` unused)."""
    global _ids
    _ids = itertools.count(first_id)
    calendar = _calendar(base_url, Credentials(**token))
    _insert(calendar, 1)  # the connection and the client's lazy imports, outside the timed part
    if start is not None:
        start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    _insert(calendar, count)
    return {"inserts": count, "began": began, "ended": time.perf_counter(), "cpu_s": time.process_time() - cpu}


def _parallel_batched(server_pid: int, base_url: str, token: dict, size: int, processes: int,
                      client=batched_client, per_process: int = PER_PROCESS_INSERTS) -> dict:
    """`processes` client processes (spawned: no state shared with this one) inserting at once, each with
    `client`; the rate is every insert over the span from the first start to the last end. They start
    together once every one has imported, built its client and warmed up (a barrier, not a pause that a
    slow child outlasts, importing on the cores the others are timed on)."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        start = manager.Barrier(processes + 1)
        run = next(_parallel_runs)
        pending = [pool.apply_async(client, (base_url, token, size, per_process,
                                             (1 + run * 4 + k) * 10**8, start)) for k in range(processes)]
        start.wait(timeout=300)
        server_cpu = _process_cpu_s(server_pid)
        results = [p.get(timeout=600) for p in pending]
        server_cpu = _process_cpu_s(server_pid) - server_cpu
    total = sum(r["inserts"] for r in results)
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    figures = {"inserts_per_s": round(total / wall),
               "client_cpu_us_per_insert": round(sum(r["cpu_s"] for r in results) / total * 1e6)}
    for phase in ("build", "serialize", "parse"):
        if f"{phase}_us_per_insert" in results[0]:
            figures[f"client_{phase}_us_per_insert"] = round(
                sum(r[f"{phase}_us_per_insert"] for r in results) / processes)
    if server_cpu:
        figures["server_cpu_us_per_insert"] = round(server_cpu / total * 1e6)
        figures["server_capacity_per_s"] = round(total / server_cpu)
    return figures


def _summary(figures: dict) -> dict:
    """Where the ceiling is: the server's capacity per core next to what came through the real client, and
    the client library's own CPU per insert."""
    cores = os.cpu_count() or 1
    single = figures["single_sequential"]
    best_batched = max((v for k, v in figures.items() if k.startswith("batched_") and "_processes" in k),
                       key=lambda v: v["inserts_per_s"])
    # the slower of the replayed batch sizes, as the verdict takes it
    batched_server_us = max(v["server_cpu_us_per_insert"] for k, v in figures.items() if k.endswith("_server_only"))

    def ceiling(client_us: int, server_us: int) -> int:
        return round(cores * 1e6 / (client_us + server_us))

    return {
        "server_capacity_per_s": {
            "single": single.get("server_capacity_per_s"),
            "batched": round(1e6 / batched_server_us),
        },
        "server_cpu_us_per_insert": {"single": single.get("server_cpu_us_per_insert"), "batched": batched_server_us},
        "through_client_per_s": {k: v["inserts_per_s"] for k, v in figures.items()
                                 if k.startswith(("single_", "batched_")) and not k.endswith("_server_only")},
        "client_cpu_us_per_insert": {"single": single["client_cpu_us_per_insert"],
                                     "batched": best_batched["client_cpu_us_per_insert"]},
        "client_over_server_cpu": {
            "single": round(single["client_cpu_us_per_insert"] / single["server_cpu_us_per_insert"], 1),
            "batched": round(best_batched["client_cpu_us_per_insert"] / batched_server_us, 1),
        },
        f"ceiling_on_{cores}_cores_per_s": {
            "single": ceiling(single["client_cpu_us_per_insert"], single["server_cpu_us_per_insert"]),
            "batched": ceiling(best_batched["client_cpu_us_per_insert"], batched_server_us),
        },
    }


def _verdicts(figures: dict) -> dict:
    single = max(v["inserts_per_s"] for k, v in figures.items() if k.startswith("single_"))
    batched_runs = [v for k, v in figures.items() if k.startswith("batched_") and "_processes" in k]
    through_client = max(v["inserts_per_s"] for v in batched_runs)
    capacity = min(v.get("server_capacity_per_s", 0) for k, v in figures.items() if k.endswith("_server_only"))
    best = max(batched_runs, key=lambda v: v["inserts_per_s"])
    client_us = best["client_cpu_us_per_insert"]
    cores = os.cpu_count() or 1
    return {
        "single": f"{'MET' if single >= 1_000 else 'NOT MET'}: {single}/s (target 1,000)",
        "batched_server_capacity": f"{'MET' if capacity >= 5_000 else 'NOT MET'}: one server core serves {capacity}/s",
        "batched_through_client": (
            f"{'MET' if through_client >= 5_000 else 'NOT MET'}: {through_client}/s through google-api-python-client"
            f" (target 5,000); client {client_us} us + server {best.get('server_cpu_us_per_insert', 0)} us CPU per"
            f" insert on {cores} cores caps it near {round(cores * 1e6 / (client_us + best.get('server_cpu_us_per_insert', 0)))}/s"),
    }


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
        token = {"token": account["access_token"], "refresh_token": account["refresh_token"],
                 "token_uri": f"{base_url}/token", "client_id": account["client_id"],
                 "client_secret": account["client_secret"]}
        for processes in CLIENT_PROCESSES:
            figures[f"single_{processes}_processes"] = _parallel_batched(
                server.pid, base_url, token, 1, processes, client=single_client, per_process=PER_PROCESS_SINGLES)
        for size in BATCH_SIZES:
            for processes in CLIENT_PROCESSES:
                figures[f"batched_{size}_{processes}_processes"] = _parallel_batched(
                    server.pid, base_url, token, size, processes)
        figures["targets"] = {"single_inserts_per_s": 1_000, "batched_inserts_per_s": 5_000}
        figures["summary"] = _summary(figures)
        figures["verdicts"] = _verdicts(figures)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
