"""What benchmarks start: the same embedded broker and Redis as the stack, services as processes."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy.local.embedded import start_redis, start_tansu

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def broker_and_redis():
    """(bootstrap, redis_url): KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else embedded ones."""
    started = []
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = start_tansu(free_port())
        started.append(broker)
        bootstrap = broker.address
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis = start_redis(free_port())
        started.append(redis)
        redis_url = redis.address
    try:
        yield bootstrap, redis_url
    finally:
        for child in reversed(started):
            child.stop()


@contextlib.contextmanager
def service(module: str, env: dict[str, str], ready_url: str | None = None, timeout_s: float = 60,
            log_path: Path | None = None):
    """`python -m module` until the block ends; its output goes to `log_path` when given (to read why a
    service failed), else nowhere."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    output = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child writes it
    process = subprocess.Popen([sys.executable, "-m", module], env=full_env, cwd=ROOT,
                               stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if ready_url:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not become ready at {ready_url}")
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        if log_path:
            output.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]
