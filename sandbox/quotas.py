"""Provider quotas as the real services enforce them, off unless a test or bench turns them on.

Google (per API, sliding window of a minute, https://developers.google.com/workspace/calendar/api/guides/quota,
https://developers.google.com/workspace/drive/api/guides/limits): Calendar allows 600 requests a minute per
user per project and 10,000 per project; Drive 12,000 and 12,000. Over the per-user limit Google answers
403 `userRateLimitExceeded`, over the project's 403 `rateLimitExceeded`, or 429 `rateLimitExceeded` (the
guide says either may come: `answer_status` picks), all in domain `usageLimits`
(https://developers.google.com/workspace/calendar/api/guides/errors). A project is an OAuth client here.

Graph (Outlook service limits, https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits):
per app ID and mailbox, 10,000 requests in 10 minutes and 4 concurrent requests; over either, 429 with
`Retry-After` and `ApplicationThrottled` (for concurrency: "Application is over its MailboxConcurrency
limit.", the message Graph sends). Outlook resources are the ones under `/users/{id}/...` and `/me/...`;
`/users` itself (the directory) and `/subscriptions` are other services, not limited here.

A call inside a batch is charged like a call of its own, as both providers do. Every figure is a setting
(`PATCH /_sandbox/quotas`), so a test can shrink a limit and its window rather than make 600 calls.
"""
from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from typing import Literal

from pydantic import BaseModel, Field

from sandbox.asgi_headers import header
from sandbox.errors import google_error, graph_error


class GoogleApiLimit(BaseModel):
    per_user: int = Field(600, ge=1, description="requests per window per user per project")
    per_project: int = Field(10_000, ge=1, description="requests per window per project (OAuth client)")
    window_s: float = Field(60, gt=0)


def _google_apis() -> dict[str, GoogleApiLimit]:
    return {"calendar": GoogleApiLimit(), "drive": GoogleApiLimit(per_user=12_000, per_project=12_000)}


class GoogleQuotas(BaseModel):
    enabled: bool = False
    answer_status: Literal[403, 429] = 403
    apis: dict[str, GoogleApiLimit] = Field(default_factory=_google_apis,
                                            description="by API: calendar, drive (Gmail's unit quotas are not emulated)")


class GraphQuotas(BaseModel):
    enabled: bool = False
    per_mailbox: int = Field(10_000, ge=1, description="requests per window per app and mailbox")
    window_s: float = Field(600, gt=0)
    concurrent_per_mailbox: int = Field(4, ge=1)
    concurrency_retry_after_s: int = Field(1, ge=0)


class QuotaSettings(BaseModel):
    google: GoogleQuotas = Field(default_factory=GoogleQuotas)
    graph: GraphQuotas = Field(default_factory=GraphQuotas)


class _Window:
    """Calls in the last `window_s` seconds, oldest first."""

    __slots__ = ("times",)

    def __init__(self):
        self.times: deque[float] = deque()

    def admit(self, now: float, limit: int, window_s: float) -> float | None:
        """None when admitted (and counted); the seconds until a place frees up otherwise."""
        times = self.times
        while times and times[0] <= now - window_s:
            times.popleft()
        if len(times) >= limit:
            return times[0] + window_s - now
        times.append(now)
        return None


class QuotaBook:
    """The quota settings and usage; `active` is read on every call, the rest only when it is true."""

    def __init__(self, state):
        self.state = state
        self.lock = threading.Lock()
        self.settings = QuotaSettings()
        self.active = False
        self.windows: dict[tuple, _Window] = defaultdict(_Window)
        self.in_flight: dict[tuple, int] = defaultdict(int)

    def configure(self, settings: QuotaSettings) -> None:
        with self.lock:
            self.settings = settings
            self.active = settings.google.enabled or settings.graph.enabled
            self.windows.clear()

    def reset(self) -> None:
        self.configure(QuotaSettings())
        with self.lock:
            self.in_flight.clear()

    def _grant(self, scope):
        authorization = header(scope, b"authorization") or ""
        token = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        return self.state.grant_for_access_token(token) if token else None

    def enter(self, scope) -> tuple[object | None, tuple | None]:
        """Charge the call: (refusal or None, the key of a concurrency slot to give back with `leave`)."""
        path = scope["path"]
        if path.startswith("/v1.0/"):
            return self._graph(scope, path)
        return self._google(scope, path), None

    def leave(self, slot: tuple) -> None:
        with self.lock:
            self.in_flight[slot] -= 1

    def _google(self, scope, path: str):
        settings = self.settings.google
        if not settings.enabled:
            return None
        segments = path.split("/", 4)
        api = segments[2] if segments[1] == "upload" and len(segments) > 2 else segments[1]
        limit = settings.apis.get(api)
        grant = self._grant(scope) if limit is not None else None
        if grant is None:  # not a limited API, or no valid token: the handler answers 401
            return None
        now = time.monotonic()
        with self.lock:
            if self.windows[("google-user", api, grant.client_id, grant.account_id)].admit(
                    now, limit.per_user, limit.window_s) is not None:
                reason, message = "userRateLimitExceeded", "User Rate Limit Exceeded"
            elif self.windows[("google-project", api, grant.client_id)].admit(
                    now, limit.per_project, limit.window_s) is not None:
                reason, message = "rateLimitExceeded", "Rate Limit Exceeded"
            else:
                return None
        if settings.answer_status == 429:
            reason, message = "rateLimitExceeded", "Rate Limit Exceeded"
        return google_error(settings.answer_status, reason, message, domain="usageLimits").response

    def _mailbox(self, grant, path: str) -> str | None:
        segments = path.split("/", 5)  # "", "v1.0", "users", id, resource, ...
        if len(segments) >= 4 and segments[2] == "me" and segments[3]:
            return grant.account_id
        if len(segments) >= 5 and segments[2] == "users" and segments[4]:
            account = self.state.account_by_email("microsoft", segments[3]) if "@" in segments[3] else None
            return account.id if account is not None else segments[3].lower()
        return None

    def _graph(self, scope, path: str):
        settings = self.settings.graph
        if not settings.enabled:
            return None, None
        grant = self._grant(scope)
        mailbox = self._mailbox(grant, path) if grant is not None else None
        if mailbox is None:
            return None, None
        key = (grant.client_id, mailbox)
        with self.lock:
            if self.in_flight[key] >= settings.concurrent_per_mailbox:
                refusal = graph_error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                                      headers={"Retry-After": str(settings.concurrency_retry_after_s)})
                return refusal.response, None
            wait = self.windows[("graph",) + key].admit(time.monotonic(), settings.per_mailbox, settings.window_s)
            if wait is not None:
                # The wording is the sandbox's: Graph documents the status and Retry-After, not this message.
                refusal = graph_error(429, "ApplicationThrottled", "Application is over its MailboxRequests limit.",
                                      headers={"Retry-After": str(max(1, math.ceil(wait)))})
                return refusal.response, None
            self.in_flight[key] += 1
        return None, key
