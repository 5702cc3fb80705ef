"""`POST /v1.0/$batch`: JSON batching (https://learn.microsoft.com/graph/json-batching).

At most 20 requests, ids unique, a body needs a Content-Type header; each request is served by
`sandbox.dispatch.Calls`, the step a direct call takes (fault rules, counters, auth), with the batch's
Authorization unless it sets its own. Requests
run concurrently unless `dependsOn` orders them; a request whose dependency failed answers 424 Failed
Dependency. The batch itself answers 200 whatever its parts answered (429s included); answers come back
in completion order, which is not the request order.
"""
from __future__ import annotations

import asyncio
import base64

import orjson
from fastapi import APIRouter, Request, Response

from sandbox.dispatch import SCOPE_KEY, Answer
from sandbox.errors import graph_error
from sandbox.microsoft.graph_common import json_object

BATCH_MAX = 20


def _bad(message: str):
    return graph_error(400, "BadRequest", message)


def _check(requests: object) -> dict[str, dict]:
    if not isinstance(requests, list) or not requests:
        raise _bad("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(requests) > BATCH_MAX:
        raise _bad(f"Too many requests in the batch: {len(requests)}. The maximum is {BATCH_MAX}.")
    by_id: dict[str, dict] = {}
    for item in requests:
        if not isinstance(item, dict) or not all(item.get(k) for k in ("id", "method", "url")):
            raise _bad("Each request in a batch needs an id, a method and a url.")
        key = str(item["id"]).lower()  # ids are case-insensitive
        if key in by_id:
            raise _bad(f"Batch request ids must be unique; '{item['id']}' is repeated.")
        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        if item.get("body") is not None and "content-type" not in headers:
            raise _bad(f"Request '{item['id']}' has a body but no Content-Type header.")
        if str(item["url"]).lstrip("/").startswith("$batch"):
            raise _bad("A batch cannot contain a batch.")
        by_id[key] = item
    for item in by_id.values():
        for dependency in item.get("dependsOn") or []:
            if str(dependency).lower() not in by_id:
                raise _bad(f"Request '{item['id']}' depends on unknown request '{dependency}'.")
    _refuse_cycles(by_id)
    return by_id


def _refuse_cycles(by_id: dict[str, dict]) -> None:
    """A dependency cycle would wait forever: refuse the batch instead."""
    finished: set[str] = set()

    def visit(key: str, path: tuple[str, ...]) -> None:
        if key in path:
            raise _bad(f"The dependsOn chain of request '{by_id[key]['id']}' loops back on itself.")
        if key not in finished:
            for dependency in by_id[key].get("dependsOn") or []:
                visit(str(dependency).lower(), (*path, key))
            finished.add(key)

    for key in by_id:
        visit(key, ())


def _content(item: dict) -> bytes | None:
    body = item.get("body")
    if body is None:
        return None
    if isinstance(body, str):  # a non-JSON body travels base64-encoded
        return base64.b64decode(body)
    return orjson.dumps(body)


_ANSWERED_HEADERS = {b"content-type": "Content-Type", b"retry-after": "Retry-After", b"location": "Location",
                     b"preference-applied": "Preference-Applied"}


def _answer(item_id: str, answer: Answer) -> dict:
    item: dict = {"id": item_id, "status": answer.status, "headers": {}}
    for name, value in answer.headers:
        if name in _ANSWERED_HEADERS:
            item["headers"][_ANSWERED_HEADERS[name]] = value.decode("latin-1")
    if answer.body:
        if "json" in item["headers"].get("Content-Type", ""):
            item["body"] = orjson.loads(answer.body)
        else:
            item["body"] = base64.b64encode(answer.body).decode()
    return item


def _failed_dependency(item_id: str) -> dict:
    return {
        "id": item_id,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": "FailedDependency", "message": "The request depends on a request that failed."}},
    }


def _headers(item: dict, authorization: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (item.get("headers") or {}).items()]
    if authorization and not any(name == b"authorization" for name, _ in headers):
        headers.append((b"authorization", authorization))
    return headers


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph batch"])
    backend_error = Answer(500, [(b"content-type", b"application/json")],
                           orjson.dumps({"error": {"code": "InternalServerError", "message": "Internal error."}}))

    async def batch(request: Request) -> Response:
        by_id = _check((await json_object(request)).get("requests"))
        calls = request.scope[SCOPE_KEY]
        authorization = next((v for k, v in request.scope["headers"] if k == b"authorization"), None)
        results: dict[str, asyncio.Future] = {key: asyncio.get_running_loop().create_future() for key in by_id}
        answers: list[dict] = []

        async def run(key: str, item: dict) -> None:
            succeeded = True
            for dependency in item.get("dependsOn") or []:
                succeeded &= await results[str(dependency).lower()]
            if not succeeded:
                answer = _failed_dependency(item["id"])
            else:
                target = "/v1.0/" + str(item["url"]).lstrip("/")
                served = await calls.call(request.scope, str(item["method"]).upper(), target,
                                          _headers(item, authorization), _content(item) or b"", backend_error)
                answer = _answer(item["id"], served)
            answers.append(answer)
            results[key].set_result(200 <= answer["status"] < 300)

        await asyncio.gather(*(run(key, item) for key, item in by_id.items()))
        # Serialised here: FastAPI's encoder walks every value of every answer and costs more than the calls.
        return Response(orjson.dumps({"responses": answers}), media_type="application/json")

    # A plain route, as Google's batch endpoint: no dependency solving, served by the direct dispatch step.
    api.add_route(api.prefix + "/$batch", batch, methods=["POST"], include_in_schema=False)
    return api
