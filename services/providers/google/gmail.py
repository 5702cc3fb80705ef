"""Gmail v1 for one user's mailbox: what mail_fetch needs, on the shared Google client (client.py).

Every call goes through client.GoogleApi: the user's shared Redis token bucket first, then the call in
the Google thread pool, with 429, 403 rateLimitExceeded/userRateLimitExceeded and 5xx retried with
backoff that honours Retry-After. The bucket is sized from Gmail's own per-user quota (below), not
Calendar's; tokens that would come only past the bucket's deadline raise RateLimited at once (not retried
here: the poller reports it and tries later). Errors come out as AuthFailed (invalid_grant, 401: a person must reconnect), HistoryExpired
(404 on history.list: full sync), TransientError (still throttled or down after the retries) and
GoogleApiError (the rest).

The discovery document's method paths already start with `gmail/v1/`, so the API is built on the
host's root (service_path ""); batches go to `<root>batch/gmail/v1`.
"""
from __future__ import annotations

import asyncio
import base64
import functools
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.common.ratelimit import RateLimited, TokenBucket
from services.common.retry import TransientError
from services.common.settings import Settings
from services.common.state import key
from services.common.tokens import Grant
from services.providers.google.client import GoogleApi, GoogleApiError, credentials_from_grant

BATCH_SIZE = 50  # Gmail allows 100 calls a batch and advises no more than 50

# Gmail's per-user limit is 15,000 quota units a minute, and messages.get and messages.list, the calls
# a sync is made of, cost 5 units each (https://developers.google.com/gmail/api/reference/quota).
# The bucket counts calls, each at that price: 3,000 a minute. Cheaper calls (history.list: 2,
# getProfile: 1) are over-counted, which only errs on the safe side.
QUOTA_UNITS_PER_USER_PER_MINUTE = 15_000
UNITS_PER_CALL = 5


class _OutOfQuota(Exception):
    """Carries the bucket's RateLimited past GoogleApi's retries: a wait longer than the deadline is not
    ours to sit out while holding the mailbox; the poller reports it and comes back later."""

    def __init__(self, limited: RateLimited):
        super().__init__(str(limited))
        self.limited = limited


class _QuotaGate:
    """The user's bucket as GoogleApi draws on it, with a refusal that leaves its retry loop at once."""

    def __init__(self, bucket: TokenBucket):
        self.bucket = bucket

    async def acquire(self, cost: float = 1) -> float:
        try:
            return await self.bucket.acquire(cost)
        except RateLimited as exc:
            raise _OutOfQuota(exc) from None


def _quota_refusal_raised(method):
    """RateLimited again, for the caller, once it is out of GoogleApi."""
    @functools.wraps(method)
    async def guarded(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except _OutOfQuota as exc:
            raise exc.limited from None
    return guarded


class HistoryExpired(Exception):
    """history.list answered 404: the start id is too old; a full sync is due."""


@dataclass(frozen=True)
class GmailMessage:
    id: str
    thread_id: str
    raw: bytes
    internal_date_ms: int | None


def gmail_bucket(redis: aioredis.Redis, settings: Settings, org_id: str, user_id: str) -> TokenBucket:
    """The user's share of Gmail's quota, shared by every worker (the same key scheme as provider_bucket)."""
    calls = QUOTA_UNITS_PER_USER_PER_MINUTE / UNITS_PER_CALL
    return TokenBucket(redis, key("ratelimit", "gmail", org_id, user_id), capacity=calls, refill_per_s=calls / 60,
                       max_wait_s=settings.rate_limit_max_wait_s)


@functools.lru_cache(maxsize=256)
def _messages(service):
    """users().messages() of a thread's service: each call of users() or messages() builds a Resource
    with every method of the discovery document, which was most of a first sync's CPU when done per message."""
    return service.users().messages()


@functools.lru_cache(maxsize=256)
def _users(service):
    return service.users()


class GmailClient:
    def __init__(self, api: GoogleApi):
        self.api = api

    @classmethod
    def open(cls, settings: Settings, redis: aioredis.Redis, grant: Grant, org_id: str, user_id: str) -> GmailClient:
        """The mailbox of the grant, drawing on the user's shared Gmail bucket."""
        api = GoogleApi(settings, credentials_from_grant(grant, settings), "gmail", "v1",
                        _QuotaGate(gmail_bucket(redis, settings, org_id, user_id)), service_path="")
        return cls(api)

    @_quota_refusal_raised
    async def profile_history_id(self) -> int:
        return int((await self.api.call(lambda s: _users(s).getProfile(userId="me")))["historyId"])

    @_quota_refusal_raised
    async def list_message_ids(self, page_token: str | None = None,
                               page_size: int = 500) -> tuple[list[str], str | None]:
        answer = await self.api.call(lambda s: _messages(s).list(userId="me", maxResults=page_size,
                                                                 pageToken=page_token))
        return [m["id"] for m in answer.get("messages", [])], answer.get("nextPageToken")

    @_quota_refusal_raised
    async def added_since(self, start_history_id: int,
                          page_token: str | None = None) -> tuple[list[str], str | None, int]:
        """Ids of messages added after the start id (one page), the next page, and the current history id."""
        try:
            answer = await self.api.call(lambda s: _users(s).history().list(
                userId="me", startHistoryId=start_history_id, maxResults=500, historyTypes="messageAdded",
                pageToken=page_token))
        except GoogleApiError as exc:
            if exc.status == 404:
                raise HistoryExpired(str(exc)) from exc
            raise
        ids = [added["message"]["id"] for record in answer.get("history", [])
               for added in record.get("messagesAdded", [])]
        return ids, answer.get("nextPageToken"), int(answer["historyId"])

    @_quota_refusal_raised
    async def get_raw(self, ids: list[str]) -> list[GmailMessage]:
        """messages.get format=raw for many ids, in batches; messages deleted meanwhile (404) are skipped.
        Only the calls of a batch that were throttled or failed with a 5xx are sent again, after the
        policy's backoff (at least the longest Retry-After); past its attempts the failure is raised."""
        found: dict[str, GmailMessage] = {}
        pending, attempt = list(ids), 0
        while pending:
            answers = await self.api.call_each([_get_raw(i) for i in pending])
            again: list[str] = []
            throttled: list[TransientError] = []
            for message_id, answer in zip(pending, answers):
                if isinstance(answer, TransientError):
                    again.append(message_id)
                    throttled.append(answer)
                elif isinstance(answer, GoogleApiError) and answer.status == 404:
                    continue
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    found[message_id] = _message(answer)
            if again:
                attempt += 1
                if attempt >= self.api.retry.max_attempts:
                    raise throttled[0]
                retry_after = max((t.retry_after_s for t in throttled if t.retry_after_s is not None), default=None)
                await asyncio.sleep(self.api.retry.delay(attempt, retry_after))
            pending = again
        return [found[i] for i in ids if i in found]

    @_quota_refusal_raised
    async def watch(self, topic: str) -> tuple[int, int]:
        answer = await self.api.call(lambda s: _users(s).watch(userId="me", body={"topicName": topic}))
        return int(answer["historyId"]), int(answer["expiration"])

    @_quota_refusal_raised
    async def stop(self) -> None:
        await self.api.call(lambda s: _users(s).stop(userId="me"))


def _get_raw(message_id: str):
    return lambda s: _messages(s).get(userId="me", id=message_id, format="raw")


def _message(answer: dict) -> GmailMessage:
    padded = answer["raw"] + "=" * (-len(answer["raw"]) % 4)
    return GmailMessage(answer["id"], answer["threadId"], base64.urlsafe_b64decode(padded),
                        int(answer["internalDate"]) if "internalDate" in answer else None)
