"""Microsoft Graph change and lifecycle notifications.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks — a new subscription is
validated by a POST with `?validationToken=`, answered within 10 s with the token as text/plain.
Each notification carries the clientState we chose at creation: one that does not match is not from
Graph and is refused, while the good ones in the same POST are published. Graph wants 2xx within 3 s,
so nothing slow happens here: verify, publish, answer 202.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import NotificationKind, ProviderNotification
from services.common.metrics import WEBHOOKS_REFUSED
from services.ingest.context import IngestContext, ingest_context, read_limited_body
from services.ingest.notifications import publish_once
from services.ingest.problems import Problem, invalid_body

router = APIRouter(prefix="/v1/webhooks/graph", tags=["webhooks"])
PROVIDER = "microsoft_graph"


class GraphNotification(BaseModel):
    model_config = ConfigDict(extra="allow")
    subscriptionId: str = Field(min_length=1)
    clientState: str | None = None
    changeType: str | None = None
    resource: str | None = None
    lifecycleEvent: Literal["reauthorizationRequired", "missed", "subscriptionRemoved"] | None = None


class GraphNotificationBatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: list[GraphNotification] = Field(min_length=1, max_length=1000)


def _delivery_id(raw: dict) -> str:
    """Graph has no delivery id; a redelivery repeats the notification byte for byte in content."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def _handle(request: Request, ctx: IngestContext, kind: NotificationKind) -> Response:
    token = request.query_params.get("validationToken")
    if token is not None:
        return PlainTextResponse(token, status_code=200)
    body = await read_limited_body(request, ctx.settings.max_body_bytes)
    try:
        raw = json.loads(body)
        batch = GraphNotificationBatch.model_validate(raw)
    except ValidationError as exc:
        raise invalid_body(exc) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "not-json", "Body is not JSON", f"the body is not valid JSON: {exc}") from None
    accepted = refused = 0
    for raw_item, item in zip(raw["value"], batch.value):
        subscription = await ctx.channels.get(PROVIDER, item.subscriptionId)
        if subscription is None:
            WEBHOOKS_REFUSED.labels(PROVIDER, "unknown_subscription").inc()
            refused += 1
            continue
        if not hmac.compare_digest((item.clientState or "").encode(), subscription.secret.encode()):
            WEBHOOKS_REFUSED.labels(PROVIDER, "bad_client_state").inc()
            refused += 1
            continue
        if kind == NotificationKind.LIFECYCLE and item.lifecycleEvent is None:
            raise Problem(422, "invalid-body", "Invalid request body", "a lifecycle notification needs lifecycleEvent",
                          [{"field": "value.lifecycleEvent", "message": "required"}])
        notification = ProviderNotification(
            provider=PROVIDER,
            kind=kind,
            org_id=subscription.org_id,
            user_id=subscription.user_id,
            integration=subscription.integration,
            delivery_id=_delivery_id(raw_item),
            channel_id=item.subscriptionId,
            change_type=item.changeType,
            lifecycle_event=item.lifecycleEvent,
            resource_id=item.resource,
            received_at=dt.datetime.now(dt.UTC),
        )
        await publish_once(ctx, notification)
        accepted += 1
    if accepted == 0:
        raise Problem(403, "webhook-refused", "Notification refused",
                      f"none of the {refused} notifications has a known subscription and its clientState")
    return Response(status_code=202)


@router.post("", status_code=202)
async def change_notification(request: Request, ctx: IngestContext = Depends(ingest_context)) -> Response:
    return await _handle(request, ctx, NotificationKind.CHANGE)


@router.post("/lifecycle", status_code=202)
async def lifecycle_notification(request: Request, ctx: IngestContext = Depends(ingest_context)) -> Response:
    return await _handle(request, ctx, NotificationKind.LIFECYCLE)
