"""The admin API: per user integration configurations, written to `integration.configs`.

Secrets given here (a POP3 password) are encrypted before they are published or stored; they are
never answered back.
"""
from __future__ import annotations

import datetime as dt
import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import Caps, Direction, GmailMailbox, Integration, IntegrationConfig, Pop3Mailbox, user_key
from schemas.base import Identifier
from services.common.state import ConfigStore, GmailMailboxOwner, StatusStore
from services.common.tokens import TokenStore
from services.common.topics import INTEGRATION_CONFIGS
from services.ingest.context import IngestContext, ingest_context
from services.ingest.problems import Problem, invalid_body


def require_admin(request: Request) -> None:
    ctx: IngestContext = request.app.state.ingest
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not token or not hmac.compare_digest(token, ctx.settings.admin_token):
        raise Problem(401, "unauthorized", "Admin token required",
                      "send 'Authorization: Bearer <admin token>'", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(prefix="/v1/orgs", tags=["admin"], dependencies=[Depends(require_admin)])


class Pop3MailboxRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pop3"] = "pop3"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(995, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = Field(min_length=1, max_length=320)
    password: str | None = Field(None, min_length=1, description="omit to keep the stored one")
    delete_after_fetch: bool = False
    poll_interval_s: int = Field(60, ge=5, le=86_400)


class IntegrationConfigRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    direction: Direction = Direction.TWO_WAY
    target_id: str | None = Field(None, max_length=1024)
    guests_as_contacts: bool = False
    field_mapping: dict[str, str] = Field(default_factory=dict)
    mailbox: Annotated[Pop3MailboxRequest | GmailMailbox, Field(discriminator="kind")] | None = None
    mailbox_mode: Literal["private", "shared"] = "private"
    caps: Caps = Field(default_factory=Caps)


OrgId = Annotated[Identifier, Path(description="CRM org id")]
UserId = Annotated[Identifier, Path(description="CRM user id")]


def _public_view(config: IntegrationConfig, status: dict | None) -> dict:
    view = config.model_dump(mode="json")
    if isinstance(view.get("mailbox"), dict) and "password_encrypted" in view["mailbox"]:
        view["mailbox"].pop("password_encrypted")
        view["mailbox"]["password_set"] = True
    view["status"] = status
    return view


async def _stored(ctx: IngestContext, config_key: str) -> IntegrationConfig | None:
    raw = await ConfigStore(ctx.redis).get(config_key)
    return IntegrationConfig.model_validate_json(raw) if raw else None


def _mailbox(body: IntegrationConfigRequest, previous: IntegrationConfig | None, ctx: IngestContext):
    if not isinstance(body.mailbox, Pop3MailboxRequest):
        return body.mailbox
    fields = body.mailbox.model_dump(exclude={"password"})
    if body.mailbox.password is not None:
        return Pop3Mailbox(**fields, password_encrypted=ctx.secrets.encrypt(body.mailbox.password))
    if previous is not None and isinstance(previous.mailbox, Pop3Mailbox):
        return Pop3Mailbox(**fields, password_encrypted=previous.mailbox.password_encrypted)
    raise Problem(422, "invalid-body", "Invalid request body", "mailbox.password is required for a new POP3 mailbox",
                  [{"field": "mailbox.password", "message": "required for a new POP3 mailbox"}])


@router.put("/{org_id}/users/{user_id}/integrations/{integration}")
async def put_config(
    org_id: OrgId, user_id: UserId, integration: Integration, body: IntegrationConfigRequest,
    ctx: IngestContext = Depends(ingest_context),
) -> dict:
    """Create or replace the configuration; workers receive it from the compacted topic."""
    config_key = user_key(org_id, user_id, integration.value)
    previous = await _stored(ctx, config_key)
    try:
        config = IntegrationConfig(
            org_id=org_id, user_id=user_id, integration=integration,
            **body.model_dump(exclude={"mailbox"}), mailbox=_mailbox(body, previous, ctx),
            updated_at=dt.datetime.now(dt.UTC),
        )
    except ValidationError as exc:  # cross-field rules of IntegrationConfig (a mailbox only for mail)
        raise invalid_body(exc) from None
    await ctx.bus.publish(INTEGRATION_CONFIGS.name, config_key, config)
    await ConfigStore(ctx.redis).put(config_key, config.model_dump_json())
    if previous is not None and isinstance(previous.mailbox, GmailMailbox) and (
            not isinstance(config.mailbox, GmailMailbox)
            or previous.mailbox.address.lower() != config.mailbox.address.lower()):
        await ctx.gmail_mailboxes.remove(previous.mailbox.address)  # pushes for it are no longer ours
    if isinstance(config.mailbox, GmailMailbox):
        await ctx.gmail_mailboxes.put(config.mailbox.address, GmailMailboxOwner(org_id, user_id))
    return _public_view(config, None)


@router.get("/{org_id}/users/{user_id}/integrations/{integration}")
async def get_config(
    org_id: OrgId, user_id: UserId, integration: Integration, ctx: IngestContext = Depends(ingest_context)
) -> dict:
    config = await _stored(ctx, user_key(org_id, user_id, integration.value))
    if config is None:
        raise Problem(404, "no-configuration", "No configuration",
                      f"user {user_id} of org {org_id} has no {integration.value} configuration")
    status = await StatusStore(ctx.redis).get(org_id, user_id, integration.value)
    return _public_view(config, status.__dict__ if status else None)


@router.delete("/{org_id}/users/{user_id}/integrations/{integration}", status_code=204)
async def delete_config(
    org_id: OrgId, user_id: UserId, integration: Integration, ctx: IngestContext = Depends(ingest_context)
) -> Response:
    """Publishes a tombstone: workers stop the integration and compaction forgets it.

    A mailbox's credentials go with it: the POP3 password lives only inside the configuration (the
    stored copy is deleted here, the topic's by compaction), and the Gmail grant is deleted from the
    token store, so nothing can fetch that mailbox any more. (mail_fetch stops the Gmail watch with the
    token its watch record keeps for that purpose.) Calendar, contact and Drive grants stay: their
    workers need them to clean up the provider side when the integration goes.
    """
    config_key = user_key(org_id, user_id, integration.value)
    previous = await _stored(ctx, config_key)
    if previous is None:
        raise Problem(404, "no-configuration", "No configuration",
                      f"user {user_id} of org {org_id} has no {integration.value} configuration")
    await ctx.bus.publish(INTEGRATION_CONFIGS.name, config_key, None)
    await ConfigStore(ctx.redis).delete(config_key)
    if isinstance(previous.mailbox, GmailMailbox):
        await ctx.gmail_mailboxes.remove(previous.mailbox.address)
    if integration == Integration.MAIL:
        await TokenStore(ctx.redis, ctx.secrets).delete(org_id, user_id, integration.value)
    return Response(status_code=204)
