"""The HTTP connection pool for Graph, one per worker process, on aiohttp.

Why aiohttp and not httpx: at 100 calendar changes a second one worker makes ~200 Graph calls a second,
and httpx's pool cost ~1.5 ms of CPU per request on this 2-core box (its connection pool polls every idle
socket and re-sniffs the async library on each step) against ~0.1 ms for aiohttp (bench: a PATCH with a
JSON answer, 32 in flight, to a local server). aiohttp is already in every worker (faust runs on it).

The session is opened on first use, inside the running event loop (aiohttp binds a session to its loop;
the pool is built when the worker module is imported, before the loop runs).
"""
from __future__ import annotations

import json as jsonlib
import ssl
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import yarl

from services.common.retry import TransientError
from services.common.settings import Settings

_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=10, sock_read=30)
_CONNECTIONS = 100  # at once, to Graph (one host)
_QUERY_SAFE = "$(),/:={}"  # OData punctuation kept readable: `$filter`, `Any(ep: ...)`


def with_query(url: str, params: dict[str, str] | None) -> str:
    """`url` with `params` added to its query string: spaces and quotes encoded, OData punctuation kept."""
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params, quote_via=quote, safe=_QUERY_SAFE)}"


class GraphHttp:
    """One aiohttp session (its pool of keep-alive connections) shared by the process's Graph clients."""

    def __init__(self, settings: Settings):
        ca_bundle = settings.provider_ca_bundle
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=_CONNECTIONS, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT)
        return self._session

    async def request(self, method: str, url: str, *, json: dict | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, object, dict[str, str]]:
        """(status, parsed JSON body or None, headers with lower-cased names). `url` is absolute and
        encoded already (links Graph gave, or built with `with_query`): it is sent as it is."""
        sent_headers = dict(headers or {})
        data = None
        if json is not None:
            data = jsonlib.dumps(json, separators=(",", ":")).encode()
            sent_headers["Content-Type"] = "application/json"
        try:
            async with self._opened().request(method, yarl.URL(url, encoded=True), data=data,
                                              headers=sent_headers) as answer:
                content = await answer.read()
                answered = {k.lower(): v for k, v in answer.headers.items()}
                status = answer.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"{method} {url.split('?')[0]}: {type(exc).__name__}: {exc}") from exc
        # orjson: a first sync reads each event twice (the delta page, our events' listing), 1,000 to an
        # answer, and the standard library's decoder took about a tenth of the worker's CPU there (py-spy)
        body = orjson.loads(content) if content and "json" in answered.get("content-type", "") else None
        return status, body, answered

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
