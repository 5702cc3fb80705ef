"""Connecting a user's provider account: the admin asks for a link, the user's browser comes back here.

1. `POST /v1/orgs/{org}/users/{user}/integrations/{integration}/connect` (admin token) answers the
   provider's authorization URL; its `state` is kept in Redis, single use, for `oauth_state_ttl_s`.
2. The provider sends the browser to `/v1/oauth/google/callback` or `/v1/oauth/microsoft/callback`
   (no admin token: the state is the credential). The code is redeemed, the account checked against the
   CRM user's address, and the grant stored encrypted (oauth_complete.py).

Which integrations connect where: Google Calendar, Google Drive and Gmail (mail) to Google; Microsoft
calendar and contacts to Microsoft, per user or, by admin consent, app-only for a whole tenant. A POP3
mailbox signs in with its password and has nothing to connect.
"""
from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from schemas import Integration, IntegrationConfig, Pop3Mailbox, user_key
from schemas.base import Identifier
from services.common.state import ConfigStore
from services.ingest import oauth_google, oauth_microsoft
from services.ingest.admin import require_admin
from services.ingest.context import IngestContext, ingest_context, read_limited_body
from services.ingest.oauth_common import provider_refused
from services.ingest.oauth_complete import complete
from services.ingest.oauth_state import PendingConnect, PendingConnects, Provider
from services.ingest.problems import Problem

router = APIRouter(tags=["oauth"])

OrgId = Annotated[Identifier, Path(description="CRM org id")]
UserId = Annotated[Identifier, Path(description="CRM user id")]
MICROSOFT = {Integration.MICROSOFT_CALENDAR, Integration.MICROSOFT_CONTACTS}


class ConnectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expected_email: str = Field(
        min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$",
        description="the CRM user's address: the account must be this one (admin consent has no account)",
    )
    allow_other_address: bool = Field(False, description="the org allows connecting an account with another address")
    admin_consent: bool = Field(False, description="Microsoft only: a tenant admin grants app-only access")


def _pending(ctx: IngestContext) -> PendingConnects:
    return PendingConnects(ctx.redis, ctx.secrets, ctx.settings.oauth_state_ttl_s)


async def _provider_for(ctx: IngestContext, org_id: str, user_id: str, integration: Integration) -> Provider:
    if integration in MICROSOFT:
        return "microsoft"
    if integration == Integration.MAIL:
        raw = await ConfigStore(ctx.redis).get(user_key(org_id, user_id, integration.value))
        if raw and isinstance(IntegrationConfig.model_validate_json(raw).mailbox, Pop3Mailbox):
            raise Problem(409, "nothing-to-connect", "A POP3 mailbox has nothing to connect",
                          "a POP3 mailbox signs in with its password; OAuth is for Gmail mailboxes")
    return "google"


@router.post("/v1/orgs/{org_id}/users/{user_id}/integrations/{integration}/connect",
             dependencies=[Depends(require_admin)], tags=["admin"])
async def connect(org_id: OrgId, user_id: UserId, integration: Integration, body: ConnectRequest,
                  ctx: IngestContext = Depends(ingest_context)) -> dict:
    """The URL to send the user's browser to; it is good once, for `expires_in` seconds."""
    provider = await _provider_for(ctx, org_id, user_id, integration)
    state = PendingConnects.new_state()
    if provider == "google":
        if body.admin_consent:
            raise Problem(422, "invalid-body", "Invalid request body", "admin_consent is for Microsoft tenants only",
                          [{"field": "body.admin_consent", "message": "Microsoft only"}])
        url, flow = oauth_google.authorization_url(ctx.settings, integration, state, body.expected_email)
    else:
        url, flow = await oauth_microsoft.authorization_url(ctx.settings, integration, state, body.expected_email,
                                                            body.admin_consent)
    pending = PendingConnect(provider, org_id, user_id, integration.value, body.expected_email,
                             body.allow_other_address, body.admin_consent, flow)
    await _pending(ctx).put(state, pending)
    return {"authorization_url": url, "expires_in": ctx.settings.oauth_state_ttl_s}


async def _take(ctx: IngestContext, provider: Provider, params: dict) -> PendingConnect:
    """The pending connect the callback's state names; it is used up whatever happens next."""
    pending = await _pending(ctx).take(params.get("state", ""))
    if pending is None or pending.provider != provider:
        raise Problem(400, "invalid-state", "Unknown or expired sign-in",
                      "this sign-in link is unknown, was already used or has expired: start connecting again")
    if "error" in params:
        name = provider.capitalize()
        raise provider_refused(name, f"{params['error']}: {params.get('error_description', '')}".rstrip(": "))
    if not pending.admin_consent and not params.get("code"):
        raise Problem(400, "invalid-callback", "Invalid callback", "the callback carries no authorization code")
    return pending


@router.get(oauth_google.CALLBACK_PATH)
async def google_callback(request: Request, ctx: IngestContext = Depends(ingest_context)):
    params = dict(request.query_params)
    pending = await _take(ctx, "google", params)
    authorized = await oauth_google.exchange(ctx.settings, Integration(pending.integration), params["code"],
                                             pending.flow)
    return await complete(ctx, request, pending, authorized)


@router.get(oauth_microsoft.CALLBACK_PATH)
async def microsoft_callback(request: Request, ctx: IngestContext = Depends(ingest_context)):
    """The admin consent redirect (or a user's answer in query mode)."""
    return await _microsoft_callback(ctx, request, dict(request.query_params))


@router.post(oauth_microsoft.CALLBACK_PATH)
async def microsoft_form_post_callback(request: Request, ctx: IngestContext = Depends(ingest_context)):
    """A user's answer, form_post: the code travels in the body, not in a URL."""
    body = await read_limited_body(request, ctx.settings.max_body_bytes)
    return await _microsoft_callback(ctx, request, dict(parse_qsl(body.decode("utf-8", "replace"))))


async def _microsoft_callback(ctx: IngestContext, request: Request, params: dict):
    pending = await _take(ctx, "microsoft", params)
    if pending.admin_consent:
        authorized = await oauth_microsoft.confirm_admin_consent(ctx.settings, params)
    else:
        authorized = await oauth_microsoft.exchange(ctx.settings, Integration(pending.integration), pending.flow,
                                                    params)
    return await complete(ctx, request, pending, authorized)
