"""`POST /v1.0/$batch`: JSON batching (https://learn.microsoft.com/graph/json-batching).

At most 20 requests, ids unique, a body needs a Content-Type header; each request goes through the whole
app again (fault rules, counters, auth), with the batch's Authorization unless it sets its own. Requests
run concurrently unless `dependsOn` orders them; a request whose dependency failed answers 424 Failed
Dependency. The batch itself answers 200 whatever its parts answered (429s included); answers come back
in completion order, which is not the request order.
"""
from __future__ import annotations

import asyncio
import base64
import json
from typing import Annotated

import httpx
from fastapi import APIRouter, Body, Request

from sandbox.errors import graph_error

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
    return json.dumps(body).encode()


def _answer(item_id: str, response: httpx.Response) -> dict:
    answer: dict = {"id": item_id, "status": response.status_code, "headers": {}}
    for name in ("content-type", "retry-after", "location", "preference-applied"):
        if name in response.headers:
            answer["headers"][name.title()] = response.headers[name]
    if response.content:
        if "json" in response.headers.get("content-type", ""):
            answer["body"] = response.json()
        else:
            answer["body"] = base64.b64encode(response.content).decode()
    return answer


def _failed_dependency(item_id: str) -> dict:
    return {
        "id": item_id,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": "FailedDependency", "message": "The request depends on a request that failed."}},
    }


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph batch"])

    @api.post("/$batch")
    async def batch(request: Request, body: Annotated[dict, Body()]) -> dict:
        by_id = _check(body.get("requests"))
        authorization = request.headers.get("authorization")
        transport = httpx.ASGITransport(app=request.app, raise_app_exceptions=False)
        results: dict[str, asyncio.Future] = {key: asyncio.get_running_loop().create_future() for key in by_id}
        answers: list[dict] = []

        async with httpx.AsyncClient(transport=transport, base_url=str(request.base_url)) as client:

            async def run(key: str, item: dict) -> None:
                succeeded = True
                for dependency in item.get("dependsOn") or []:
                    succeeded &= await results[str(dependency).lower()]
                if not succeeded:
                    answer = _failed_dependency(item["id"])
                else:
                    headers = dict(item.get("headers") or {})
                    if authorization and not any(k.lower() == "authorization" for k in headers):
                        headers["Authorization"] = authorization
                    url = "/v1.0/" + str(item["url"]).lstrip("/")
                    response = await client.request(item["method"].upper(), url, headers=headers, content=_content(item))
                    answer = _answer(item["id"], response)
                answers.append(answer)
                results[key].set_result(200 <= answer["status"] < 300)

            await asyncio.gather(*(run(key, item) for key, item in by_id.items()))
        return {"responses": answers}

    return api
