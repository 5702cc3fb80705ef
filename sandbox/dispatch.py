"""Every provider call takes one path: named by its route, counted and faulted, then served.

A call on its own connection arrives as ASGI (`Calls` is the app's middleware); a call inside a batch
(Google's multipart batch, Graph's JSON $batch) arrives as `Calls.call(...)` from the batch endpoint,
which finds this object in its request's scope. Both go through `Calls._serve`: `RouteTable.resolve`
names the route once, `FaultBook.decide` counts the call and draws its faults, and a route whose handler
is a plain `async def handler(request)` is called directly with a light Request (no second routing, no
middleware stack, no ASGI round trip). A route FastAPI validates (typed bodies and parameters) goes on to
the rest of the app below this layer, so it is still counted once.

Google charges every call of a batch against quota and serves them as if they came alone
(https://developers.google.com/calendar/api/guides/batch), Graph likewise evaluates each request of a
$batch on its own (https://learn.microsoft.com/graph/json-batching#response-format).
"""
from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import unquote

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.faults import FaultBook, injected_error
from sandbox.quotas import QuotaBook

SCOPE_KEY = "sandbox.calls"
# The keys of a connection's scope a call inside a batch inherits; the rest is the call's own.
_INHERITED = ("type", "asgi", "http_version", "scheme", "root_path", "client", "server", "app", "state",
              "extensions")


class Answer(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Entry(NamedTuple):
    regex: re.Pattern
    methods: frozenset[str]
    template: str
    convertors: dict
    endpoint: Callable | None  # set when the handler can be called directly with a Request


class Resolved(NamedTuple):
    template: str  # what counters and fault rules name the call by
    endpoint: Callable | None
    path_params: dict


def _first_segment(path: str) -> str:
    return path[1:].partition("/")[0]


class RouteTable:
    """The app's routes in registration order (the router's matching order), to resolve a call once.

    Built on first use, when every route is registered. Entries are grouped by the first path segment of
    their template so that a Graph call does not try every Google route first.
    """

    # Calls already resolved, by (method, path): a batch's parts mostly share one path, and a regex match
    # per part was a few percent of a batched insert. Paths carry ids, so the memory is bounded.
    CACHED_CALLS = 4096

    def __init__(self, app):
        self.app = app
        self._resolved: dict[tuple[str, str], Resolved] = {}
        self._entries: list[_Entry] | None = None
        self._by_segment: dict[str, list[_Entry]] = {}
        self._any_segment: list[_Entry] = []

    def _build(self) -> list[_Entry]:
        entries = []
        for context in iter_route_contexts(self.app.router.routes):
            template = context.path_format
            if template is None:
                continue
            regex, _, convertors = compile_path(template)
            endpoint = context.endpoint
            direct = (not isinstance(context.original_route, APIRoute) and inspect.iscoroutinefunction(endpoint))
            entries.append(_Entry(regex, frozenset(context.methods or ()), template, convertors,
                                  endpoint if direct else None))
        first = {_first_segment(e.template) for e in entries if "{" not in _first_segment(e.template)}
        for segment in first:
            self._by_segment[segment] = [e for e in entries if _first_segment(e.template) in (segment, "")
                                         or "{" in _first_segment(e.template)]
        self._any_segment = [e for e in entries if "{" in _first_segment(e.template)]
        return entries

    def resolve(self, method: str, path: str) -> Resolved:
        """The call's route; its `path_params` are shared by every call of the same path: read, never
        written."""
        key = (method, path)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._match(method, path)
            if len(self._resolved) >= self.CACHED_CALLS:
                self._resolved.clear()
            self._resolved[key] = resolved
        return resolved

    def _match(self, method: str, path: str) -> Resolved:
        if self._entries is None:
            self._entries = self._build()
        for entry in self._by_segment.get(_first_segment(path), self._any_segment):
            match = entry.regex.match(path)
            if match is not None and (not entry.methods or method in entry.methods):
                params = {k: entry.convertors[k].convert(v) for k, v in match.groupdict().items()}
                return Resolved(entry.template, entry.endpoint, params)
        return Resolved(path, None, {})


def _exception_handler(handlers: dict, exc: Exception):
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


class Calls:
    """The app's middleware for provider calls; the control API (`/_sandbox`) is never counted nor faulted."""

    def __init__(self, app: ASGIApp, book: FaultBook, routes_app, quotas: QuotaBook | None = None):
        self.app = app  # the rest of the app: exception handling, then the router
        self.book = book
        self.quotas = quotas
        self.routes_app = routes_app
        self.routes = RouteTable(routes_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self
        response = await self._serve(scope, receive, send, self._admit(scope))
        if response is not None:
            await response(scope, receive, send)

    async def call(self, outer: Scope, method: str, target: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, fallback: Answer) -> Answer:
        """One call inside a batch, answered as if it had come on its own connection.

        `target` is the path and query as the caller wrote them; `headers` are lower-case ASGI headers;
        `fallback` answers for a call whose handler failed, so that one bug does not lose the batch.
        """
        scope = self._scope(self._inherited(outer), method, target, headers)
        return await self._answer(scope, body, self._admit(scope), fallback)

    async def call_all(self, outer: Scope, requests: list[tuple[str, str, list, bytes]],
                       fallback: Answer) -> list[Answer]:
        """The calls of a batch, answers in request order. They are served one after the other, except
        that a call the fault rules delay waits concurrently with the others, so a batch takes the delay
        once, not once per call (Google serves a batch's calls in no set order). A task per call would
        cost more than most calls do."""
        answers: list[Answer | None] = [None] * len(requests)
        delayed = []
        inherited = self._inherited(outer)
        for index, (method, target, headers, body) in enumerate(requests):
            scope = self._scope(inherited, method, target, headers)
            admitted = self._admit(scope)
            answering = self._answer(scope, body, admitted, fallback)
            if admitted[1]:
                delayed.append((index, asyncio.ensure_future(answering)))
            else:
                answers[index] = await answering
        for index, task in delayed:
            answers[index] = await task
        return answers  # type: ignore[return-value]

    def _inherited(self, outer: Scope) -> dict:
        """What every call of a batch takes from the batch's own scope: worked out once per batch."""
        inherited = {key: outer[key] for key in _INHERITED if key in outer}
        inherited[SCOPE_KEY] = self
        return inherited

    @staticmethod
    def _scope(inherited: dict, method: str, target: str, headers: list) -> dict:
        raw_path, _, query = target.partition("?")
        scope = inherited.copy()
        scope["method"], scope["path"], scope["raw_path"] = method, unquote(raw_path), raw_path.encode()
        scope["query_string"], scope["headers"] = query.encode(), headers
        return scope

    async def _answer(self, scope: dict, body: bytes, admitted, fallback: Answer) -> Answer:
        exchange = _Exchange(body)
        try:
            response = await self._serve(scope, exchange.receive, exchange, admitted, body)
            if response is None:
                return exchange.answer()
            if isinstance(getattr(response, "body", None), bytes) and response.background is None:
                return Answer(response.status_code, response.raw_headers, response.body)
            await response(scope, exchange.receive, exchange)  # a streamed answer: let it write itself
            return exchange.answer()
        except Exception:  # noqa: BLE001 (a bug in one call must not take the other answers with it)
            return fallback

    def _admit(self, scope: Scope) -> tuple[Resolved, float, Response | None]:
        """Name the call's route, count the call and draw its faults: (route, latency, refusal or None)."""
        method, path = scope["method"], scope["path"]
        route = self.routes.resolve(method, path)
        latency, status, rule = self.book.decide(method, route.template)
        refusal = injected_error(status, rule, path) if status is not None and rule is not None else None
        return route, latency, refusal

    async def _serve(self, scope: Scope, receive: Receive, send: Send, admitted,
                     body: bytes | None = None) -> Response | None:
        """Serve an admitted call: the Response of a direct handler (or the injected fault, or the quota's
        refusal) for the caller to send, None when the rest of the app answered through `send`. Quotas,
        off by default, cost one attribute read here; on, a call holds its concurrency slot (Graph's
        per-mailbox limit) until it is answered, injected latency included."""
        quotas = self.quotas
        if quotas is None or not quotas.active or admitted[2] is not None:
            return await self._respond(scope, receive, send, admitted, body)
        refusal, slot = quotas.enter(scope)
        if refusal is not None:
            return refusal
        try:
            return await self._respond(scope, receive, send, admitted, body)
        finally:
            if slot is not None:
                quotas.leave(slot)

    async def _respond(self, scope: Scope, receive: Receive, send: Send, admitted,
                       body: bytes | None = None) -> Response | None:
        """A batch part's `body` is handed to the Request as already read (Starlette's own cache), so
        reading it costs nothing."""
        route, latency, refusal = admitted
        if latency:
            await asyncio.sleep(latency)
        if refusal is not None:
            return refusal
        if route.endpoint is None:
            await self.app(scope, receive, send)
            return None
        scope["path_params"], scope["endpoint"] = route.path_params, route.endpoint
        request = Request(scope, receive, send)
        if body is not None:
            request._body = body
        try:
            return await route.endpoint(request)
        except Exception as exc:
            handler = _exception_handler(self.routes_app.exception_handlers, exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer


class _Exchange:
    """A call's ASGI channel inside a batch: `receive` gives the call's body once (then stays connected
    until answered), the object itself is the `send` that keeps the answer instead of writing it."""

    __slots__ = ("body", "chunks", "headers", "status")

    def __init__(self, body: bytes):
        self.body: bytes | None = body
        self.status, self.headers, self.chunks = 500, [], []

    async def receive(self):
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await asyncio.get_running_loop().create_future()

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.headers = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def answer(self) -> Answer:
        return Answer(self.status, list(self.headers), b"".join(self.chunks))
