"""What every Graph route shares: the base URL links are built on, Prefer headers, page tokens, windows."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re

import orjson
from fastapi import Request, Response

from sandbox.errors import graph_error
from sandbox.microsoft import event_model


def json_answer(body, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON answer serialised by orjson: the bytes Starlette's JSONResponse makes (compact, UTF-8), at a
    fraction of the cost, for the routes on the hot path (event creates, $batch)."""
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def json_object(request: Request) -> dict:
    """The request's JSON object, for a plain route; 400 BadRequest otherwise, in the words the app's
    validation handler uses for a FastAPI `Body()` dict, so a route reads the same either way."""
    raw = await request.body()
    if not raw:
        raise graph_error(400, "BadRequest", "Invalid value at 'body': Field required")
    try:
        body = orjson.loads(raw)
    except ValueError:
        raise graph_error(400, "BadRequest", "Invalid value at 'body': JSON decode error") from None
    if not isinstance(body, dict):
        raise graph_error(400, "BadRequest", "Invalid value at 'body': Input should be a valid dictionary")
    return body


def base_url(request: Request) -> str:
    """Where the client reached the sandbox, so that nextLink/deltaLink lead back to the same server."""
    return str(request.base_url).rstrip("/")


def preferences(request: Request) -> dict[str, str]:
    """`Prefer: odata.maxpagesize=5, outlook.timezone="Pacific Standard Time"` as a dict."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in re.findall(r'[\w.]+\s*=\s*(?:"[^"]*"|[^,]*)', header):
            name, _, value = part.partition("=")
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def preferred_time_zone(request: Request) -> str:
    """Times read back in the zone asked by `Prefer: outlook.timezone`, UTC otherwise
    (https://learn.microsoft.com/graph/api/user-list-events#request-headers)."""
    return preferences(request).get("outlook.timezone", "UTC")


def applied_preferences(request: Request, **applied: int | None) -> dict[str, str]:
    """The `Preference-Applied` header for what this answer honoured."""
    parts = [f"odata.{name}={value}" for name, value in applied.items() if value is not None]
    if "outlook.timezone" in preferences(request):
        parts.append(f'outlook.timezone="{preferred_time_zone(request)}"')
    return {"Preference-Applied": ", ".join(parts)} if parts else {}


def int_param(value: str | None, name: str, default: int, maximum: int, error_code: str = "ErrorInvalidUrlQuery") -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise graph_error(400, error_code, f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive.")
    return int(value)


def encode_token(payload: dict) -> str:
    """Opaque page/state tokens: clients must not read them, the sandbox must read them back."""
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def window(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    """The calendar view's [startDateTime, endDateTime): ISO 8601, UTC when no offset is given."""
    if not start or not end:
        raise graph_error(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
        )
    bounds = []
    for value in (start, end):
        moment = event_model.parse_local(value, "startDateTime/endDateTime")
        bounds.append(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))
    if bounds[1] <= bounds[0]:
        raise graph_error(400, "ErrorInvalidParameter", "The EndDateTime must be after the StartDateTime.")
    return bounds[0], bounds[1]
