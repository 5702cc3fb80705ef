"""Backoff: exponential with full jitter, capped, and never shorter than a server's Retry-After."""
import asyncio
import random

import pytest

from services.common.retry import RetryPolicy, TransientError, parse_retry_after, retry_async


def test_delay_grows_exponentially_within_the_cap():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=4)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1), (3, 2), (4, 4), (8, 4)]:
        delays = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8, "jitter spreads over the whole range"


def test_retry_after_is_a_floor():
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1)
    assert policy.delay(1, retry_after_s=7) == 7


@pytest.mark.parametrize("value,expected", [("5", 5.0), (None, None), ("", None), ("soon", None),
                                            ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)])
def test_retry_after_header_in_seconds_or_as_a_date(value, expected):
    from email.utils import parsedate_to_datetime

    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_transient_failures_are_retried_until_success_then_give_up_at_the_budget():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("429", retry_after_s=0)
        return "done"

    policy = RetryPolicy(max_attempts=3, base_delay_s=0, max_delay_s=0)
    assert asyncio.run(retry_async(flaky, policy)) == "done"
    calls.clear()
    with pytest.raises(TransientError):
        asyncio.run(retry_async(flaky, RetryPolicy(max_attempts=2, base_delay_s=0, max_delay_s=0)))
    assert len(calls) == 2


def test_other_errors_are_not_retried():
    calls = []

    async def broken():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        asyncio.run(retry_async(broken, RetryPolicy(base_delay_s=0)))
    assert len(calls) == 1
