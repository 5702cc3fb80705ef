"""Microsoft Graph sandbox throughput: event creates per second, single and through JSON $batch.

The sandbox runs as its own process (`python -m sandbox`), so client and server do not share a GIL. The
token is app-only, taken by MSAL from the sandbox's identity endpoint over TLS (trusting the sandbox CA).
Measured: single creates one after another on one requests.Session, single creates from a few threads
(a Session each), and $batch requests of 20 creates (Graph's maximum), one after another; each with the
CPU the server and this client spent per create (`server_capacity_per_s` = 1e6 / server CPU us per
create: what one server core does when the client keeps up; for $batch, per part).

Baseline, in the same run: the same sequential creates against a bare FastAPI app on the same uvicorn
that only echoes the body (`echo_app`), so that the ratio means the same on a fast or a busy machine.
"""
from __future__ import annotations

import itertools
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import httpx
import msal
import requests
from fastapi import Body, FastAPI

from bench._infra import free_port, service
from bench.sandbox_calendar import _Meter

SEQUENTIAL_CREATES = 1_000
THREADS = 4
THREADED_CREATES = 2_000
BATCHED_CREATES = 4_000
BATCH_SIZE = 20
SCOPE = "https://graph.microsoft.com/.default"
EXTENDED_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId"

_numbers = itertools.count()


def _event() -> dict:
    n = next(_numbers)
    return {
        "subject": f"Meeting {n}",
        "body": {"contentType": "text", "content": "Agenda"},
        "start": {"dateTime": "2030-01-07T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2030-01-07T11:00:00", "timeZone": "W. Europe Standard Time"},
        "location": {"displayName": "Room 1"},
        "transactionId": f"bench-{n}",
        "singleValueExtendedProperties": [{"id": EXTENDED_ID, "value": str(n)}],
    }


def _session(token: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _create(events_url: str, token: str, count: int) -> None:
    session = _session(token)
    for _ in range(count):
        answer = session.post(events_url, json=_event())
        if answer.status_code != 201:
            raise RuntimeError(f"create answered {answer.status_code}: {answer.text[:200]}")


def _per_second(count: int, work) -> float:
    started = time.perf_counter()
    work()
    return round(count / (time.perf_counter() - started))


def _threaded(events_url: str, token: str):
    per_thread = THREADED_CREATES // THREADS

    def work() -> None:
        with ThreadPoolExecutor(THREADS) as pool:
            for done in [pool.submit(_create, events_url, token, per_thread) for _ in range(THREADS)]:
                done.result()

    return work


def _batched(base_url: str, user_id: str, token: str):
    session = _session(token)
    bodies = [
        {"requests": [{"id": str(i), "method": "POST", "url": f"/users/{user_id}/events",
                       "headers": {"Content-Type": "application/json"}, "body": _event()} for i in range(BATCH_SIZE)]}
        for _ in range(BATCHED_CREATES // BATCH_SIZE)
    ]

    def work() -> None:
        for body in bodies:
            statuses = {r["status"] for r in session.post(f"{base_url}/v1.0/$batch", json=body).json()["responses"]}
            if statuses != {201}:
                raise RuntimeError(f"batched creates answered {statuses}")

    return work


def echo_app():
    """The baseline server (uvicorn factory): parse the JSON body, answer it back with 201."""
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict:
        return {}

    @app.post("/v1.0/users/{user_id}/events", status_code=201)
    async def create(user_id: str, body: Annotated[dict, Body()]) -> dict:
        return {"id": user_id, **body}

    return app


def _baseline_rate() -> float:
    port = free_port()
    env = {"UVICORN_APP": "bench.sandbox_graph:echo_app", "UVICORN_FACTORY": "true", "UVICORN_PORT": str(port),
           "UVICORN_LOG_LEVEL": "warning", "UVICORN_NO_ACCESS_LOG": "true"}
    with service("uvicorn", env, ready_url=f"http://127.0.0.1:{port}/ready"):
        events_url = f"http://127.0.0.1:{port}/v1.0/users/bench/events"
        _create(events_url, "none", 50)
        return _per_second(SEQUENTIAL_CREATES, lambda: _create(events_url, "none", SEQUENTIAL_CREATES))


def run() -> dict:
    http_port, https_port = free_port(), free_port()
    base_url, identity_url = f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}"
    tls_dir = tempfile.mkdtemp(prefix="sandbox-tls-")
    env = {"SANDBOX_HTTP_PORT": str(http_port), "SANDBOX_HTTPS_PORT": str(https_port), "SANDBOX_TLS_DIR": tls_dir}
    with service("sandbox", env, ready_url=f"{base_url}/_sandbox/counters") as server:
        user = httpx.post(f"{base_url}/_sandbox/accounts", json={"provider": "microsoft", "email": "bench@contoso.test"}).json()
        identity = requests.Session()
        identity.trust_env, identity.verify = False, str(Path(tls_dir) / "ca.pem")
        app = msal.ConfidentialClientApplication(
            user["client_id"], client_credential=user["client_secret"], authority=f"{identity_url}/{user['tenant_id']}",
            http_client=identity, instance_discovery=False,
        )
        token = app.acquire_token_for_client([SCOPE])["access_token"]
        events_url = f"{base_url}/v1.0/users/{user['id']}/events"
        _create(events_url, token, 50)  # warm up: imports, connections
        meter = _Meter(server.pid)
        figures = {
            "single_sequential": meter.measure(SEQUENTIAL_CREATES, lambda: _create(events_url, token, SEQUENTIAL_CREATES)),
            f"single_{THREADS}_threads": meter.measure(THREADED_CREATES // THREADS * THREADS, _threaded(events_url, token)),
            f"batched_{BATCH_SIZE}": meter.measure(BATCHED_CREATES // BATCH_SIZE * BATCH_SIZE,
                                                  _batched(base_url, user["id"], token)),
        }
    baseline = _baseline_rate()
    figures["baseline_echo_posts_per_s"] = baseline
    figures["sequential_ratio_to_baseline"] = round(figures["single_sequential"]["inserts_per_s"] / baseline, 2)
    single = max(figures["single_sequential"]["inserts_per_s"], figures[f"single_{THREADS}_threads"]["inserts_per_s"])
    batched = figures[f"batched_{BATCH_SIZE}"]
    figures["verdicts"] = {
        "single": f"{'MET' if single >= 1_000 else 'NOT MET'}: {single}/s (target 1,000)",
        "batched": f"{'MET' if batched['inserts_per_s'] >= 5_000 else 'NOT MET'}: {batched['inserts_per_s']}/s in $batch"
                   f" of {BATCH_SIZE} (target 5,000); one server core serves {batched.get('server_capacity_per_s')}/s,"
                   f" the requests+json client spends {batched['client_cpu_us_per_insert']} us per create",
    }
    return figures


if __name__ == "__main__":
    run()
