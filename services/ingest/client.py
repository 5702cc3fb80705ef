"""A client of ingest's CRM endpoint, as a CRM backend would write it: signs and posts batches.

The reference CRM, the benchmarks and the tests use it; a real CRM would do the same in its language.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import httpx

from schemas import CrmChange
from services.ingest.signing import signed_headers

CHANGES_PATH = "/v1/crm/changes"


def changes_body(changes: Iterable[CrmChange]) -> bytes:
    return encoded_changes_body(c.model_dump_json() for c in changes)


def encoded_changes_body(changes: Iterable[str]) -> bytes:
    """The body for changes already in CrmChange JSON, as a CRM that keeps them so (an outbox) holds
    them: put in as they are, not parsed into models only to be serialised again."""
    return b'{"changes":[' + ",".join(changes).encode() + b"]}"


def signed_request(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    headers = signed_headers(secret, int(time.time()) if timestamp is None else timestamp, body)
    headers["Content-Type"] = "application/json"
    return headers


class IngestClient:
    def __init__(self, base_url: str, secret: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def post_changes(self, changes: Iterable[CrmChange]) -> httpx.Response:
        body = changes_body(changes)
        return self._http.post(CHANGES_PATH, content=body, headers=signed_request(self.secret, body))

    def close(self) -> None:
        self._http.close()


class AsyncIngestClient:
    def __init__(self, base_url: str, secret: str, timeout_s: float = 10.0):
        self.secret = secret
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)

    async def post_changes(self, changes: Iterable[CrmChange]) -> httpx.Response:
        return await self.post_body(changes_body(changes))

    async def post_encoded_changes(self, changes: Iterable[str]) -> httpx.Response:
        """Post changes held as CrmChange JSON (see `encoded_changes_body`)."""
        return await self.post_body(encoded_changes_body(changes))

    async def post_body(self, body: bytes) -> httpx.Response:
        return await self._http.post(CHANGES_PATH, content=body, headers=signed_request(self.secret, body))

    async def aclose(self) -> None:
        await self._http.aclose()
