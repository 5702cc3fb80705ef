"""Google push: Calendar and Drive channel notifications, and Gmail's Pub/Sub push.

Calendar/Drive: https://developers.google.com/calendar/api/guides/push — headers only, no body; the
channel token we set at events.watch proves the sender; the first message (state `sync`) only says
the channel works. Gmail: https://developers.google.com/gmail/api/guides/push — a Pub/Sub push whose
`message.data` is base64url JSON {emailAddress, historyId}; the push URL carries our token.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
from typing import Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import NotificationKind, ProviderNotification
from services.ingest.context import IngestContext, ingest_context, read_limited_body
from services.ingest.notifications import publish_once, refuse
from services.ingest.problems import Problem, invalid_body

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_CHANNEL_PROVIDERS = {"calendar": "google_calendar", "drive": "google_drive"}


@router.post("/google/{api}", status_code=200)
async def channel_notification(
    api: Literal["calendar", "drive"],
    channel_id: str = Header(alias="X-Goog-Channel-ID"),
    resource_id: str = Header(alias="X-Goog-Resource-ID"),
    resource_state: str = Header(alias="X-Goog-Resource-State"),
    message_number: int = Header(alias="X-Goog-Message-Number"),
    channel_token: str | None = Header(None, alias="X-Goog-Channel-Token"),
    ctx: IngestContext = Depends(ingest_context),
) -> Response:
    provider = _CHANNEL_PROVIDERS[api]
    channel = await ctx.channels.get(provider, channel_id)
    if channel is None:
        raise refuse(provider, "unknown_channel", 404, f"no open channel {channel_id}")
    if not hmac.compare_digest((channel_token or "").encode(), channel.secret.encode()):
        raise refuse(provider, "bad_token", 403, "X-Goog-Channel-Token does not match the channel's token")
    if channel.resource_id and channel.resource_id != resource_id:
        raise refuse(provider, "wrong_resource", 403, "X-Goog-Resource-ID is not the channel's resource")
    if resource_state == "sync":
        return Response(status_code=200)  # the channel is open; nothing changed yet
    notification = ProviderNotification(
        provider=provider,
        kind=NotificationKind.CHANGE,
        org_id=channel.org_id,
        user_id=channel.user_id,
        integration=channel.integration,
        delivery_id=f"{channel_id}:{message_number}",
        channel_id=channel_id,
        resource_id=resource_id,
        resource_state=resource_state,
        message_number=message_number,
        received_at=dt.datetime.now(dt.UTC),
    )
    await publish_once(ctx, notification)
    return Response(status_code=200)


class PubSubMessage(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    data: str
    message_id: str = Field(alias="messageId", min_length=1)
    publish_time: str | None = Field(None, alias="publishTime")


class PubSubPush(BaseModel):
    model_config = ConfigDict(extra="allow")
    message: PubSubMessage
    subscription: str


class GmailPushData(BaseModel):
    model_config = ConfigDict(extra="allow")
    emailAddress: str = Field(min_length=3)
    historyId: int


@router.post("/gmail", status_code=204)
async def gmail_push(request: Request, token: str = "", ctx: IngestContext = Depends(ingest_context)) -> Response:
    if not hmac.compare_digest(token.encode(), ctx.settings.gmail_push_token.encode()):
        raise refuse("gmail", "bad_token", 403, "the push URL's token is not ours")
    body = await read_limited_body(request, ctx.settings.max_body_bytes)
    try:
        push = PubSubPush.model_validate_json(body)
        padded = push.message.data + "=" * (-len(push.message.data) % 4)
        data = GmailPushData.model_validate(json.loads(base64.urlsafe_b64decode(padded)))
    except ValidationError as exc:
        raise invalid_body(exc) from None
    except (binascii.Error, ValueError) as exc:
        raise Problem(400, "bad-push-data", "Bad Pub/Sub message", f"message.data is not base64 JSON: {exc}") from None
    owner = await ctx.gmail_mailboxes.get(data.emailAddress)
    if owner is None:
        raise refuse("gmail", "unknown_mailbox", 404, f"no configured mailbox {data.emailAddress}")
    notification = ProviderNotification(
        provider="gmail",
        kind=NotificationKind.CHANGE,
        org_id=owner.org_id,
        user_id=owner.user_id,
        integration="mail",
        delivery_id=push.message.message_id,
        history_id=data.historyId,
        received_at=dt.datetime.now(dt.UTC),
    )
    await publish_once(ctx, notification)
    return Response(status_code=204)
