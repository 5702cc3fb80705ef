"""The shared token bucket against the real Redis: clients and processes drawing from one bucket
together never exceed its rate."""
from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid

import pytest

from services.common.ratelimit import RateLimited, TokenBucket, provider_bucket
from services.common.settings import Settings
from services.common.state import connect

pytestmark = pytest.mark.integration

CAPACITY = 5
RATE = 40.0  # tokens per second
SLACK_S = 0.05  # scheduling jitter between the reservation's time and the moment we stamp it


def fresh_name() -> str:
    return f"crmsync:ratelimit:test:{uuid.uuid4().hex}"


def most_in_any_window(stamps: list[float], window_s: float) -> int:
    stamps = sorted(stamps)
    most, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] > window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def assert_within_rate(stamps: list[float]) -> None:
    """Over any interval of t seconds at most capacity + rate * t grants (t from 0.1 s to the whole run)."""
    span = max(stamps) - min(stamps)
    for window_s in (0.1, 0.25, 0.5, 1.0, span):
        allowed = CAPACITY + RATE * (window_s + SLACK_S)
        assert most_in_any_window(stamps, window_s) <= allowed, f"over the rate in a {window_s}s window"


async def drain(redis_url: str, name: str, count: int) -> list[float]:
    """Acquire `count` tokens one by one; the wall-clock time each was granted."""
    redis = connect(redis_url)
    bucket = TokenBucket(redis, name, CAPACITY, RATE)
    stamps = []
    try:
        for _ in range(count):
            await bucket.acquire()
            stamps.append(time.time())
    finally:
        await redis.aclose()
    return stamps


def drain_in_process(redis_url: str, name: str, count: int, start, results) -> None:
    start.wait()
    results.put(asyncio.run(drain(redis_url, name, count)))


async def test_a_full_bucket_grants_its_capacity_at_once(redis_url):
    redis = connect(redis_url)
    bucket = TokenBucket(redis, fresh_name(), CAPACITY, RATE)
    waits = [await bucket.reserve() for _ in range(CAPACITY)]
    assert waits == [0.0] * CAPACITY
    next_wait = await bucket.reserve()
    assert 0 < next_wait <= 1 / RATE + SLACK_S
    await redis.aclose()


async def test_two_clients_sharing_a_bucket_never_exceed_the_rate(redis_url):
    name, each = fresh_name(), 40
    started = time.monotonic()
    first, second = await asyncio.gather(drain(redis_url, name, each), drain(redis_url, name, each))
    elapsed = time.monotonic() - started
    assert len(first) == len(second) == each
    assert_within_rate(first + second)
    assert elapsed >= (2 * each - CAPACITY) / RATE - SLACK_S


def test_two_processes_sharing_a_bucket_never_exceed_the_rate(redis_url):
    name, each = fresh_name(), 50
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=drain_in_process, args=(redis_url, name, each, start, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    start.wait(60)
    stamps = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(10)
    assert [len(s) for s in stamps] == [each, each]
    overlap = min(max(s) for s in stamps) - max(min(s) for s in stamps)
    assert overlap > 0, "the processes must have drawn from the bucket at the same time"
    everything = stamps[0] + stamps[1]
    assert_within_rate(everything)
    assert max(everything) - min(everything) >= (2 * each - CAPACITY) / RATE - SLACK_S


async def test_a_caller_past_its_deadline_takes_nothing(redis_url):
    redis = connect(redis_url)
    bucket = TokenBucket(redis, fresh_name(), CAPACITY, RATE)
    await bucket.acquire(cost=CAPACITY)
    with pytest.raises(RateLimited) as raised:
        await bucket.acquire(cost=CAPACITY, max_wait_s=0.01)
    assert raised.value.retry_after_s == pytest.approx(CAPACITY / RATE, abs=SLACK_S)
    # Nothing was taken by the refused call: one token is due after 1/RATE, not after the refused five.
    assert await bucket.reserve() <= 1 / RATE + SLACK_S
    await redis.aclose()


async def test_a_cost_over_the_capacity_is_refused(redis_url):
    redis = connect(redis_url)
    bucket = TokenBucket(redis, fresh_name(), CAPACITY, RATE)
    with pytest.raises(ValueError):
        await bucket.acquire(cost=CAPACITY + 1)
    await redis.aclose()


async def test_provider_buckets_are_sized_from_the_settings(redis_url):
    redis = connect(redis_url)
    settings = Settings(google_quota_per_user=600, google_quota_window_s=60)
    google = provider_bucket(redis, settings, "google_calendar", "org1", "user1")
    graph = provider_bucket(redis, settings, "microsoft_graph", "org1", "user1")
    assert (google.capacity, google.refill_per_s) == (600, 10.0)
    assert (graph.capacity, graph.refill_per_s) == (10_000, 10_000 / 600)
    assert google.name == "crmsync:ratelimit:google_calendar:org1:user1"
    await redis.aclose()
