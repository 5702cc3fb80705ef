"""Ingest throughput and latency against a raw aiokafka producer on the same broker, in the same run.

The client is aiohttp (lighter than httpx) because it shares the machine's two cores with ingest.

(a) Signed batches of 100 changes posted as fast as a few connections allow, vs the same messages
sent by a bare AIOKafkaProducer: changes/s for both and the ratio (target >= 0.5).
(b) A steady 2,000 changes/s (20 batches of 100 a second) for a while: p50/p99 request latency
(target p99 < 50 ms).
"""
from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
from aiokafka import AIOKafkaProducer

from bench._infra import broker_and_redis, free_port, percentile, service
from services.common.topics import ensure_topics
from services.ingest.client import changes_body, signed_request
from tests.support.factories import crm_change, unique_org

BATCH = 100
BATCHES = 200
ROUNDS = 3
CONCURRENCY = 8
STEADY_RATE_PER_S = 2_000
STEADY_SECONDS = 10
SECRET = "bench-secret"


def _bodies(count: int) -> list[bytes]:
    org = unique_org()
    return [changes_body([crm_change(org, record_id=f"r{b}-{i}") for i in range(BATCH)]) for b in range(count)]


async def _raw_producer_rate(bootstrap: str, bodies: list[bytes]) -> float:
    import json

    messages = [(c["org_id"] + ":Events:" + c["record_id"], json.dumps(c).encode())
                for body in bodies for c in json.loads(body)["changes"]]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        started = time.perf_counter()
        for offset in range(0, len(messages), BATCH):  # the same unit of work as one ingest request
            futures = [await producer.send("crm.changes", value=v, key=k.encode())
                       for k, v in messages[offset:offset + BATCH]]
            await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client(http: aiohttp.ClientSession):
        while not queue.empty():
            body = queue.get_nowait()
            sent = time.perf_counter()
            async with http.post(url, data=body, headers=signed_request(SECRET, body)) as response:
                await response.read()
                latencies.append(time.perf_counter() - sent)
                if response.status != 202:
                    raise RuntimeError(f"ingest answered {response.status}")

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return len(bodies) * BATCH / (time.perf_counter() - started), latencies


async def _steady(url: str, bodies: list[bytes]) -> list[float]:
    """Post at a fixed rate (open loop): latency is measured from the scheduled send time."""
    interval = BATCH / STEADY_RATE_PER_S
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        start = time.perf_counter()

        async def one(index: int, body: bytes):
            scheduled = start + index * interval
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            async with http.post(url, data=body, headers=signed_request(SECRET, body)) as response:
                await response.read()
                latencies.append(time.perf_counter() - scheduled)
                if response.status != 202:
                    raise RuntimeError(f"ingest answered {response.status}")

        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return latencies


def run() -> dict:
    with broker_and_redis() as (bootstrap, redis_url):
        asyncio.run(ensure_topics(bootstrap, 6))
        port = free_port()
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url, "CRMSYNC_INGEST_PORT": str(port),
               "CRMSYNC_HMAC_SECRET": SECRET, "CRMSYNC_LOG_LEVEL": "WARNING"}
        with service("services.ingest", env, ready_url=f"http://127.0.0.1:{port}/readyz"):
            url = f"http://127.0.0.1:{port}/v1/crm/changes"
            asyncio.run(_post_all(url, _bodies(20), CONCURRENCY))  # warm-up
            # Alternate the two, three rounds each, and keep the medians: a machine busy with
            # something else for a moment then weighs on both sides alike.
            raw_rates, ingest_rates, latencies = [], [], []
            for _ in range(ROUNDS):
                raw_rates.append(asyncio.run(_raw_producer_rate(bootstrap, _bodies(BATCHES))))
                rate, round_latencies = asyncio.run(_post_all(url, _bodies(BATCHES), CONCURRENCY))
                ingest_rates.append(rate)
                latencies.extend(round_latencies)
            raw_rate, ingest_rate = statistics.median(raw_rates), statistics.median(ingest_rates)
            steady = asyncio.run(_steady(url, _bodies(STEADY_RATE_PER_S * STEADY_SECONDS // BATCH)))
    return {
        "raw_producer_changes_per_s": round(raw_rate),
        "ingest_changes_per_s": round(ingest_rate),
        "ratio": round(ingest_rate / raw_rate, 3),
        "ratio_target": 0.5,
        "max_throughput_request_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "max_throughput_request_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        f"steady_{STEADY_RATE_PER_S}_changes_per_s_p50_ms": round(percentile(steady, 50) * 1000, 1),
        f"steady_{STEADY_RATE_PER_S}_changes_per_s_p99_ms": round(percentile(steady, 99) * 1000, 1),
        "p99_target_ms": 50,
    }
