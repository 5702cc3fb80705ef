"""Fault injection and call counting for every provider route.

A rule names a route by method and path template (`POST /calendar/v3/calendars/{calendarId}/events`,
`*` as a wildcard) and adds latency, a share of 429 answers (with Retry-After) or of 5xx answers.
Each rule draws from its own `random.Random(seed)`, so a test run is repeatable. Calls are counted per
route template, including each call inside a batch: `sandbox.dispatch.Calls` asks `FaultBook.decide`
for every call, alone or batched, as quota is charged per call at Google.
"""
from __future__ import annotations

import fnmatch
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from sandbox.errors import google_error, graph_error


class FaultRule(BaseModel):
    method: str = Field("*", description="HTTP method, or * for any")
    route: str = Field("*", description="route template glob, e.g. '/calendar/v3/*'")
    latency_ms: float = Field(0, ge=0, le=60_000)
    rate_429: float = Field(0, ge=0, le=1, description="share of calls answered 429")
    rate_5xx: float = Field(0, ge=0, le=1, description="share of calls answered 503")
    rate_quota_exceeded: float = Field(
        0, ge=0, le=1, description="share of calls answered as over a daily quota: Google 403 quotaExceeded "
        "(Graph has no daily limit: its routes answer 429 with Retry-After instead)")
    retry_after_s: int = Field(1, ge=0, le=3600)
    google_403_rate_limit: bool = Field(
        False, description="answer Google's quota errors as 403 rateLimitExceeded instead of 429"
    )
    seed: int = 0

    def matches(self, method: str, template: str) -> bool:
        return (self.method == "*" or self.method.upper() == method) and fnmatch.fnmatchcase(
            template, self.route
        )


@dataclass
class _ArmedRule:
    rule: FaultRule
    rng: random.Random


@dataclass
class FaultBook:
    """The rules in force and the call counters; shared by the whole sandbox process."""

    rules: list[_ArmedRule] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    injected: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: FaultRule) -> None:
        with self.lock:
            self.rules.append(_ArmedRule(rule, random.Random(rule.seed)))

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def reset(self) -> None:
        with self.lock:
            self.rules.clear()
            self.calls.clear()
            self.injected.clear()

    def decide(self, method: str, template: str) -> tuple[float, int | None, FaultRule | None]:
        """Latency to add and the status to answer instead of the real one (None: answer for real)."""
        latency = 0.0
        with self.lock:
            self.calls[f"{method} {template}"] += 1
            for armed in self.rules:
                if not armed.rule.matches(method, template):
                    continue
                latency += armed.rule.latency_ms / 1000
                draw = armed.rng.random()
                if draw < armed.rule.rate_429:
                    self.injected[f"{method} {template} 429"] += 1
                    return latency, 429, armed.rule
                if draw < armed.rule.rate_429 + armed.rule.rate_5xx:
                    self.injected[f"{method} {template} 503"] += 1
                    return latency, 503, armed.rule
                if draw < armed.rule.rate_429 + armed.rule.rate_5xx + armed.rule.rate_quota_exceeded:
                    self.injected[f"{method} {template} quotaExceeded"] += 1
                    return latency, QUOTA_EXCEEDED, armed.rule
        return latency, None, None


# decide()'s status for a quotaExceeded fault: 403 at Google, but not every 403 is this one.
QUOTA_EXCEEDED = -403


def _is_graph(path: str) -> bool:
    return path.startswith("/v1.0")


def injected_error(status: int, rule: FaultRule, path: str):
    retry_after = {"Retry-After": str(rule.retry_after_s)}
    if _is_graph(path):
        if status in (429, QUOTA_EXCEEDED):
            return graph_error(429, "TooManyRequests", "Too many requests.", headers=retry_after).response
        return graph_error(503, "serviceNotAvailable", "Service unavailable.", headers=retry_after).response
    if status == QUOTA_EXCEEDED:
        # A daily limit, not a rate: no Retry-After (https://developers.google.com/workspace/calendar/api/guides/errors).
        return google_error(403, "quotaExceeded", "Calendar usage limits exceeded." if path.startswith("/calendar")
                            else "Quota exceeded.", domain="usageLimits").response
    if status == 429:
        if rule.google_403_rate_limit:
            return google_error(
                403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits", headers=retry_after
            ).response
        return google_error(
            429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits", headers=retry_after
        ).response
    return google_error(503, "backendError", "Backend Error").response
