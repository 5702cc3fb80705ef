"""A small async Microsoft Graph client: tokens, the shared quota, retries and JSON batching.

Every call, and every attempt of it, first takes its cost from the mailbox's token bucket in Redis
(Outlook's quota is per app and mailbox, and several workers may call for one mailbox; a batch costs
one token per part, as Graph counts them), then sends with a token from MSAL. When the bucket would
make us wait past its deadline, its RateLimited goes straight to the caller, unretried. Graph's throttling and outages (429, 503, 504, each with Retry-After) become
TransientError and are retried with backoff that honours Retry-After; when the attempts run out the
TransientError reaches the caller, whose message is retried later: nothing is dropped. A 401 drops
the cached token and tries once more with a fresh one; a refused grant is AuthFailed.

`batch` sends up to 20 requests per `/$batch` (Graph's limit). Graph answers a batch 200 whatever
its parts answered and in any order: the parts are put back in request order, and only the parts
that were throttled or unavailable are sent again. A client sends one `/$batch` at a time, however
many of its callers batch at once: Graph dispatches up to four requests of a batch to Outlook at once,
which is the whole concurrency Outlook allows an app per mailbox (4), so a second batch beside it would
have its parts throttled (Microsoft Q&A 1660054, 734143). Callers that batch side by side still gain:
one maps its next writes or reads its answers while another's batch is at Graph.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.calendar_sync.ports import AuthFailed
from services.common.logging import get_logger
from services.common.ratelimit import RateLimited
from services.common.retry import RetryPolicy, TransientError, parse_retry_after, retry_async
from services.common.settings import Settings
from services.providers.microsoft.graph_http import GraphHttp, with_query
from services.providers.microsoft.tokens import MsalTokens

log = get_logger(__name__)

BATCH_MAX = 20  # https://learn.microsoft.com/graph/json-batching
RETRIED_STATUSES = frozenset({429, 503, 504})  # https://learn.microsoft.com/graph/throttling


class QuotaBucket(Protocol):
    """The shared token bucket (services/common/ratelimit.TokenBucket) as this client uses it."""

    async def acquire(self, cost: float = 1) -> float: ...


class _OutOfQuota(Exception):
    """Carries the bucket's RateLimited past retry_async: a wait that long is not ours to sit out while
    holding the user's partition; the caller gives its message back and it comes again later."""

    def __init__(self, limited: RateLimited):
        super().__init__(str(limited))
        self.limited = limited


class GraphError(Exception):
    """A Graph answer no retry will change (400, 404, 409, 410...): callers decide what it means."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class GraphResponse:
    status: int
    body: Any = None  # parsed JSON, None when empty
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class BatchRequest:
    method: str
    url: str  # relative to /v1.0, with its query string: "/users/{id}/events/{eid}?$select=id"
    body: dict | None = None
    headers: dict[str, str] | None = None  # e.g. If-Match


def error_of(response: GraphResponse, what: str) -> Exception:
    """The exception a failed answer stands for: TransientError, AuthFailed or GraphError."""
    error = response.body.get("error", {}) if isinstance(response.body, dict) else {}
    code, message = str(error.get("code", "")), str(error.get("message", ""))
    if response.status in RETRIED_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return TransientError(f"{what}: Graph {response.status} {code}", retry_after_s=retry_after)
    if response.status in (401, 403):
        # 403 on the user's own mailbox: consent withdrawn, permission missing, mailbox not enabled.
        return AuthFailed(f"Graph refused {what}: {response.status} {code}: {message}")
    return GraphError(response.status, code, message)


class GraphClient:
    """Graph v1.0 for one grant and one mailbox (the quota bucket is the mailbox's)."""

    def __init__(self, settings: Settings, tokens: MsalTokens, bucket: QuotaBucket, *,
                 http: GraphHttp, policy: RetryPolicy | None = None):
        self.base_url = settings.microsoft_graph_base_url.rstrip("/") + "/v1.0"
        self.tokens = tokens
        self.bucket = bucket
        self.policy = policy or RetryPolicy(settings.retry_max_attempts, settings.retry_base_delay_s,
                                            settings.retry_max_delay_s)
        self.http = http  # shared by the process's clients, closed by its owner (GraphConnections)
        self._batch_turn = asyncio.Lock()  # one /$batch at Graph at a time (see the module's docstring)
        self._next_in_line = asyncio.Lock()  # the one batch call waiting for the turn

    # --- single calls ----------------------------------------------------------------------------
    async def request(self, method: str, url: str, *, params: dict | None = None, json: dict | None = None,
                      headers: dict | None = None) -> GraphResponse:
        """One call, retried while Graph throttles; a 2xx answer or the exception its failure stands for."""
        what = f"{method} {url.split('?')[0]}"

        async def attempt() -> GraphResponse:
            response = await self._send(method, url, params=params, json=json, headers=headers)
            if not response.ok:
                raise error_of(response, what)
            return response

        try:
            return await retry_async(attempt, self.policy, on_retry=self._log_retry(what))
        except _OutOfQuota as exc:
            raise exc.limited from None

    async def pages(self, url: str, params: dict | None = None) -> AsyncIterator[list[dict]]:
        """The `value` of each page of a collection, following @odata.nextLink."""
        next_url: str | None = url
        while next_url:
            body = (await self.request("GET", next_url, params=params)).body
            yield body.get("value", [])
            next_url, params = body.get("@odata.nextLink"), None

    async def _send(self, method: str, url: str, *, params: dict | None = None, json: dict | None = None,
                    headers: dict | None = None, cost: int = 1, batched: bool = False) -> GraphResponse:
        """One HTTP exchange through the quota; a 401 is tried once more with a token fresh from MSAL.
        A `batched` call (a batch's) goes in turn, one at Graph at a time (see `_in_turn`)."""
        target = with_query(self._absolute(url), params)
        for fresh in (False, True):
            if batched:
                status, body, answered = await self._in_turn(method, target, json, headers, cost)
            else:
                sent_headers = await self._authorised(headers, cost)
                status, body, answered = await self.http.request(method, target, json=json, headers=sent_headers)
            if status != 401 or fresh:
                break
            self.tokens.invalidate()
        return GraphResponse(status, body, answered)

    async def _authorised(self, headers: dict | None, cost: int) -> dict:
        """The call's headers with a bearer token, once its cost is taken from the mailbox's quota."""
        try:
            await self.bucket.acquire(cost)
        except RateLimited as exc:
            raise _OutOfQuota(exc) from exc
        return {**(headers or {}), "Authorization": f"Bearer {await self.tokens.access_token()}"}

    async def _in_turn(self, method: str, target: str, json: dict | None, headers: dict | None,
                       cost: int) -> tuple[int, object, dict[str, str]]:
        """One batch call at Graph at a time. The next in line (one: the quota's Redis calls stay one at
        a time per client) takes its quota while the current one is at Graph, and goes out as soon as it
        is answered, before that one's answers are read."""
        async with self._next_in_line:
            sent_headers = await self._authorised(headers, cost)
            await self._batch_turn.acquire()
        try:
            return await self.http.request(method, target, json=json, headers=sent_headers)
        finally:
            self._batch_turn.release()
            await asyncio.sleep(0)  # the call woken by the turn goes out before these answers are read

    def _absolute(self, url: str) -> str:
        """Relative paths go under /v1.0; absolute ones (nextLink, deltaLink) must stay on our Graph host,
        so that a stored cursor can never send the bearer token elsewhere."""
        if url.startswith(("http://", "https://")):
            if not url.startswith(self.base_url + "/"):
                raise ValueError(f"refusing a Graph link outside {self.base_url}: {url[:80]}")
            return url
        return self.base_url + "/" + url.lstrip("/")

    @staticmethod
    def _log_retry(what: str):
        def log_it(attempt: int, exc: TransientError, wait: float) -> None:
            log.info("graph call retried", call=what, attempt=attempt, wait_s=round(wait, 2), reason=str(exc))
        return log_it

    # --- batches ---------------------------------------------------------------------------------
    async def batch(self, requests: list[BatchRequest]) -> list[GraphResponse]:
        """Each request's answer, in order. Throttled parts are re-sent (alone) until the attempts run out;
        other failures are answers for the caller to judge (see `error_of`)."""
        answers: list[GraphResponse | None] = [None] * len(requests)
        try:
            for start in range(0, len(requests), BATCH_MAX):
                chunk = list(range(start, min(start + BATCH_MAX, len(requests))))
                await self._batch_chunk(requests, chunk, answers)
        except _OutOfQuota as exc:
            raise exc.limited from None
        return answers  # type: ignore[return-value]

    async def _batch_chunk(self, requests: list[BatchRequest], pending: list[int],
                           answers: list[GraphResponse | None]) -> None:
        attempt = 1
        while True:
            got = await self._post_batch([requests[i] for i in pending])
            for index, answer in zip(pending, got):
                answers[index] = answer
            throttled = [(i, a) for i, a in zip(pending, got) if a.status in RETRIED_STATUSES]
            if not throttled or attempt >= self.policy.max_attempts:
                return
            waits = [parse_retry_after(a.headers.get("retry-after")) for _, a in throttled]
            retry_after = max((w for w in waits if w is not None), default=None)
            wait = self.policy.delay(attempt, retry_after)
            log.info("graph batch parts retried", parts=len(throttled), attempt=attempt,
                     wait_s=round(wait, 2))
            await asyncio.sleep(wait)
            pending, attempt = [i for i, _ in throttled], attempt + 1

    async def _post_batch(self, chunk: list[BatchRequest]) -> list[GraphResponse]:
        """One /$batch call (itself retried when throttled as a whole); answers in request order."""
        if len(chunk) == 1:  # a batch of one is a plain call: no envelope, the same answer
            only = chunk[0]
            # retry_async only retries what _send raises (the network); statuses go back to _batch_chunk.
            return [await retry_async(lambda: self._send(only.method, only.url, json=only.body, headers=only.headers,
                                                         batched=True), self.policy)]
        parts = []
        for number, item in enumerate(chunk):
            part: dict = {"id": str(number), "method": item.method, "url": item.url}
            headers = dict(item.headers or {})
            if item.body is not None:
                part["body"] = item.body
                headers["Content-Type"] = "application/json"
            if headers:
                part["headers"] = headers
            parts.append(part)

        async def attempt() -> GraphResponse:
            response = await self._send("POST", "/$batch", json={"requests": parts}, cost=len(chunk), batched=True)
            if not response.ok:
                raise error_of(response, "POST /$batch")
            return response

        body = (await retry_async(attempt, self.policy, on_retry=self._log_retry("POST /$batch"))).body
        by_id = {str(r.get("id")): r for r in body.get("responses", [])}
        missing = [str(n) for n in range(len(chunk)) if str(n) not in by_id]
        if missing:
            raise TransientError(f"Graph $batch answered without parts {missing}")
        return [_part_answer(by_id[str(n)]) for n in range(len(chunk))]


def _part_answer(part: dict) -> GraphResponse:
    headers = {str(k).lower(): str(v) for k, v in (part.get("headers") or {}).items()}
    body = part.get("body")
    return GraphResponse(int(part.get("status", 500)), body if isinstance(body, dict) else None, headers)
