"""One user's access to one Google API, as the adapters (calendar.py, gmail.py, drive) share it.

- Credentials come from the stored grant's refresh token; the access token is refreshed for real at
  settings.google_token_url, on expiry and on a 401. A refused refresh (invalid_grant) is AuthFailed.
  Credentials are kept per grant in the process, so an adapter opened per message does not refresh
  the token every time.
- google-api-python-client is synchronous and httplib2.Http is not thread-safe: calls run on a thread
  pool shared by every user, and each thread has its own Http and its own service object (a service
  holds no user state: each call wraps the thread's Http in an AuthorizedHttp of its user's credentials).
- Every call first takes its tokens from the shared Redis bucket (one per Google call, a batch part
  included: Google charges each), so all workers together stay within the user's quota.
- Errors become what an engine acts on: AuthFailed, CursorExpired, TransientError (throttling, 5xx,
  network; retried here with backoff, honouring Retry-After) or GoogleApiError (the rest, with the
  status and reason so that callers can treat a 404, 409 or 410 as the answer it is).
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from services.calendar_sync.ports import AuthFailed, CursorExpired
from services.common.ratelimit import TokenBucket
from services.common.retry import PermanentError, RetryPolicy, TransientError, parse_retry_after, retry_async
from services.common.settings import Settings
from services.common.tokens import Grant

# Quota errors (domain usageLimits): all mean "back off and try again", not "give up".
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
# 410 reasons that mean the stored sync state is no longer usable: list again from scratch.
RESYNC_REASONS = frozenset({"fullSyncRequired", "updatedMinTooLongAgo"})
BATCH_LIMIT = 50  # calls per batch request: Google allows 1,000, its guides advise 50
HTTP_TIMEOUT_S = 30.0
# Google calls in flight at once per process, all users together. A call spends nearly all its time waiting
# for Google's answer (its CPU share is small since KeptResources), so this is what bounds the calls a
# worker makes per second: 16 held calendar_sync's 64 keyed handlers to 16 calls per round trip.
THREADS = 64
CREDENTIALS_KEPT = 1024  # grants whose access token a process keeps

MakeRequest = Callable[[Resource], HttpRequest]
Answer = Any  # the decoded JSON body of a successful call (None for an empty 204)


class GoogleApiError(PermanentError):
    """A refusal no retry fixes (4xx other than auth, quota and resync); status and reason say which."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"Google API {status} {reason}: {message}")
        self.status = status
        self.reason = reason


_credentials: collections.OrderedDict[tuple, Credentials] = collections.OrderedDict()
_credentials_lock = threading.Lock()


def credentials_from_grant(grant: Grant, settings: Settings) -> Credentials:
    """The grant's credentials, the same object for the same grant while the process keeps it.

    A new one has no access token: its first call refreshes at the token endpoint.
    """
    if not grant.refresh_token:
        raise AuthFailed(f"the Google grant of {grant.account_email} has no refresh token")
    name = (settings.google_token_url, settings.google_client_id, grant.refresh_token)
    with _credentials_lock:
        credentials = _credentials.get(name)
        if credentials is None:
            credentials = _credentials[name] = Credentials(
                token=None, refresh_token=grant.refresh_token, token_uri=settings.google_token_url,
                client_id=settings.google_client_id, client_secret=settings.google_client_secret,
            )
            while len(_credentials) > CREDENTIALS_KEPT:
                _credentials.popitem(last=False)
        _credentials.move_to_end(name)
        return credentials


def _reasons(error: HttpError) -> list[str]:
    """The `reason`s of Google's error body (errors[] in v3 APIs, details[] in newer ones)."""
    try:
        body = json.loads(error.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
    entries = (body.get("errors") or []) + (body.get("details") or [])
    return [entry["reason"] for entry in entries if isinstance(entry, dict) and entry.get("reason")]


def translate(exc: BaseException) -> BaseException:
    """The exception an engine acts on for what the client library raised."""
    if isinstance(exc, BatchError):  # a batch answer we could not read: the calls' fate is unknown
        return TransientError(f"unreadable Google batch answer: {exc}")
    if isinstance(exc, HttpError):
        status, reasons = exc.status_code, _reasons(exc)
        reason = reasons[0] if reasons else ""
        message = exc.reason if isinstance(exc.reason, str) else ""
        if status == 401:
            return AuthFailed(f"Google refused the credentials: {message}")
        if status == 410 and reason in RESYNC_REASONS:
            return CursorExpired(message or reason)
        if status == 429 or status >= 500 or (status == 403 and RATE_LIMIT_REASONS.intersection(reasons)):
            retry_after = parse_retry_after(exc.resp.get("retry-after")) if exc.resp is not None else None
            return TransientError(f"Google API {status} {reason}".strip(), retry_after_s=retry_after)
        return GoogleApiError(status, reason, message)
    if isinstance(exc, RefreshError):
        if getattr(exc, "retryable", False):
            return TransientError(f"token refresh failed for now: {exc}")
        return AuthFailed(f"Google refused to refresh the token: {exc}")
    if isinstance(exc, (TransportError, httplib2.HttpLib2Error, OSError)):
        return TransientError(f"Google unreachable: {exc!r}")
    return exc


_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="google-api")
_per_thread = threading.local()


class KeptResources:
    """A service whose collections (`events()`, `users().messages()` ...) are built once and kept.

    googleapiclient builds a collection anew on every call, every method of it with its docstring
    (Schemas.prettyPrintSchema): `service.events()` took 7 ms of CPU, many times the call's own share
    of it, and every provider thread did it for every call, holding the GIL. A collection holds no
    state of a call, so one per thread (as the service is) serves them all.
    """

    def __init__(self, resource: Resource):
        self._resource = resource
        self._collections = frozenset((getattr(resource, "_resourceDesc", None) or {}).get("resources", {}))
        self._kept: dict[str, KeptResources] = {}

    def __getattr__(self, name: str):
        if name not in self._collections:
            return getattr(self._resource, name)
        return lambda: self._kept.get(name) or self._kept.setdefault(name, KeptResources(getattr(self._resource, name)()))


def _thread_client(settings: Settings, api: str, version: str, endpoint: str) -> tuple[Resource, httplib2.Http]:
    """This thread's service and Http for the API at `endpoint`; they carry no user."""
    name = (api, version, endpoint, settings.provider_ca_bundle)
    clients = _per_thread.__dict__.setdefault("clients", {})
    client = clients.get(name)
    if client is None:
        http = httplib2.Http(timeout=HTTP_TIMEOUT_S, ca_certs=settings.provider_ca_bundle)
        service = build(api, version, http=http, static_discovery=True, cache_discovery=False,
                        client_options={"api_endpoint": endpoint})
        client = clients[name] = (KeptResources(service), http)
    return client


WARM_UP_WAIT_S = 10.0


def api_endpoint(settings: Settings, api: str, version: str, service_path: str | None = None) -> str:
    """Where the API's method paths start: also the key of each thread's service for it."""
    path = f"{api}/{version}/" if service_path is None else service_path
    return f"{settings.google_api_base_url}/{path}"


def warm_threads(settings: Settings, api: str, version: str, collections: tuple[str, ...]) -> int:
    """Build every pool thread's service and `collections` for the API now; the number of threads warmed.

    A thread's first call builds its service and collections (~10 ms of CPU): after a restart a burst of
    changes met all 64 cold threads at once, and the first two seconds of the latency bench's 100 changes
    a second waited on it (p99 1.1 s). Each task waits at a barrier, so each runs on a thread of its own.
    """
    endpoint = api_endpoint(settings, api, version)
    barrier = threading.Barrier(THREADS)

    def warm() -> bool:
        service, _ = _thread_client(settings, api, version, endpoint)
        for name in collections:
            getattr(service, name)()
        try:
            barrier.wait(WARM_UP_WAIT_S)
        except threading.BrokenBarrierError:
            return False  # the pool was busy with calls: the threads they hold warm as they go
        return True

    return sum(future.result() for future in [_pool.submit(warm) for _ in range(THREADS)])


class GoogleApi:
    """One user's client for one API (e.g. calendar v3): calls through the bucket, in threads, retried.

    `service_path`: what follows the host in the discovery document's base URL ("calendar/v3/";
    "" for APIs whose method paths carry it, as Gmail's do).
    """

    def __init__(self, settings: Settings, credentials: Credentials, api: str, version: str, bucket: TokenBucket,
                 service_path: str | None = None):
        self.settings = settings
        self.credentials = credentials
        self.api, self.version = api, version
        self.bucket = bucket
        self.endpoint = api_endpoint(settings, api, version, service_path)
        self.batch_uri = f"{settings.google_api_base_url}/batch/{api}/{version}"
        self.retry = RetryPolicy(settings.retry_max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s)

    # --- in the pool's threads -------------------------------------------------------------------
    def _client(self) -> tuple[Resource, AuthorizedHttp]:
        service, http = _thread_client(self.settings, self.api, self.version, self.endpoint)
        return service, AuthorizedHttp(self.credentials, http=http)

    def _execute(self, make: MakeRequest) -> Answer:
        service, http = self._client()
        try:
            return make(service).execute(http=http)
        except Exception as exc:
            failure = translate(exc)
            if failure is exc:  # not a Google or network failure: a bug, raised as it is
                raise
            raise failure from exc

    def _execute_batch(self, makes: list[MakeRequest]) -> list[Answer | BaseException]:
        answers: list[Answer | BaseException] = [None] * len(makes)

        def done(request_id: str, response: Answer, exception: BaseException | None) -> None:
            answers[int(request_id)] = translate(exception) if exception is not None else response

        service, http = self._client()
        batch = BatchHttpRequest(callback=done, batch_uri=self.batch_uri)
        for number, make in enumerate(makes):
            batch.add(make(service), request_id=str(number))
        try:
            batch.execute(http=http)
        except Exception as exc:  # the batch as a whole failed: so did each call in it
            failure = translate(exc)
            if not isinstance(failure, (TransientError, GoogleApiError)):
                raise failure from exc
            return [failure] * len(makes)
        return answers

    async def _in_thread(self, fn, *args):
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(_pool, lambda: context.run(fn, *args))

    # --- on the event loop ------------------------------------------------------------------------
    async def call(self, make: MakeRequest) -> Answer:
        """One call, after its token; throttling, 5xx and network failures retried with backoff."""
        async def attempt():
            await self.bucket.acquire(1)
            return await self._in_thread(self._execute, make)

        return await retry_async(attempt, self.retry)

    async def call_each(self, makes: list[MakeRequest]) -> list[Answer | BaseException]:
        """One attempt at each call, batched by BATCH_LIMIT (batches run side by side); an answer or
        the translated error per call, in order. AuthFailed is raised: it concerns every call."""
        chunks = [makes[i:i + BATCH_LIMIT] for i in range(0, len(makes), BATCH_LIMIT)]

        async def run(chunk: list[MakeRequest]) -> list[Answer | BaseException]:
            try:
                await self.bucket.acquire(len(chunk))
            except TransientError as exc:  # RateLimited: no tokens within the deadline
                return [exc] * len(chunk)
            if len(chunk) == 1:
                try:
                    return [await self._in_thread(self._execute, chunk[0])]
                except (TransientError, GoogleApiError, CursorExpired) as exc:
                    return [exc]
            return await self._in_thread(self._execute_batch, chunk)

        answers = [a for chunk_answers in await asyncio.gather(*(run(c) for c in chunks)) for a in chunk_answers]
        for answer in answers:
            if isinstance(answer, AuthFailed):
                raise answer
        return answers
