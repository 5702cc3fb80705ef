"""Retry with exponential backoff and full jitter, honouring a server's Retry-After.

Providers say how long to wait (Graph's 429 Retry-After, Google's quota errors); when they do, we wait
at least that long. Otherwise the delay doubles per attempt up to a cap, with full jitter so that many
workers throttled at once do not come back in step.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying: throttling, a 5xx, a broker or network hiccup."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(Exception):
    """A failure no retry will fix: the message goes to the DLQ with this reason."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        jittered = (rng or random).uniform(0, ceiling)
        if retry_after_s is not None:
            return max(float(retry_after_s), jittered)
        return jittered


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


async def retry_async(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[int, TransientError, float], None] | None = None,
) -> T:
    """Run `call`, retrying TransientError per the policy; the last TransientError is re-raised."""
    attempt = 1
    while True:
        try:
            return await call()
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise
            wait = policy.delay(attempt, exc.retry_after_s)
            if on_retry:
                on_retry(attempt, exc, wait)
            await asyncio.sleep(wait)
            attempt += 1

