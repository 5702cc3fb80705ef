"""The Google client's thread pool is warmed at start: every thread holds its service and collections before
the first burst of calls, so a restart does not put a cold thread (~10 ms of CPU) in front of each call."""
from __future__ import annotations

import threading

from services.common.settings import Settings
from services.providers.google import client


def _built_here(endpoint: str) -> tuple[str, bool]:
    clients = client._per_thread.__dict__.get("clients", {})
    kept = [service for (api, _, at, _), (service, _) in clients.items() if api == "calendar" and at == endpoint]
    return threading.current_thread().name, bool(kept) and "events" in kept[0]._kept


def test_every_pool_thread_holds_its_service_and_collections_after_warming():
    settings = Settings(google_api_base_url="http://127.0.0.1:9")  # nothing listens: warming makes no call
    endpoint = f"{settings.google_api_base_url}/calendar/v3/"

    assert client.warm_threads(settings, "calendar", "v3", ("events",)) == client.THREADS

    barrier = threading.Barrier(client.THREADS)

    def look() -> tuple[str, bool]:
        barrier.wait(10)  # one look per thread
        return _built_here(endpoint)

    seen = [future.result() for future in [client._pool.submit(look) for _ in range(client.THREADS)]]
    assert len({name for name, _ in seen}) == client.THREADS
    assert all(warm for _, warm in seen)
