"""The end of a connect: check the account, keep the grant, mark the integration ok, resume sync.

The address check guards against a connect link opened by the wrong person: a link made for CRM user A
and completed by someone signed in as B would sync B's calendar into A's CRM. Unless the org allows other
addresses it is refused: nothing is stored, and the grant is given back where the provider has a way
(Google's revocation endpoint). A reconnect (there was a grant, or the integration had
failed to authenticate) publishes a full SyncJob so the workers pick up where they stopped.
"""
from __future__ import annotations

import datetime as dt
import html
import uuid

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from schemas import Integration, SyncJob, SyncJobKind
from services.common.auth_status import AUTH_FAILED, mark_ok
from services.common.logging import get_logger
from services.common.secrets import SecretBoxError
from services.common.state import StatusStore
from services.common.tokens import TokenStore
from services.common.topics import SYNC_JOBS
from services.ingest.context import IngestContext
from services.ingest.oauth_common import Authorized, same_address
from services.ingest.oauth_state import PendingConnect
from services.ingest.problems import Problem

log = get_logger(__name__)

RECONNECTED = "reconnected"


async def complete(ctx: IngestContext, request: Request, pending: PendingConnect, authorized: Authorized):
    provider = pending.provider.capitalize()
    account = authorized.account_email
    if account is not None and not pending.allow_other_address and not same_address(account, pending.expected_email):
        if authorized.discard is not None:
            await authorized.discard()
        raise Problem(
            403, "account-mismatch", "This account's address is not the CRM user's",
            f"You signed in to {provider} as {account}, but this CRM user's address is {pending.expected_email}. "
            f"Sign in as {pending.expected_email}, or ask your CRM administrator to allow connecting an account "
            "with another address. Nothing was connected.",
        )
    org, user, integration = pending.org_id, pending.user_id, pending.integration
    tokens = TokenStore(ctx.redis, ctx.secrets)
    reconnect = await _was_connected(ctx, tokens, org, user, integration)
    await tokens.put(org, user, integration, authorized.grant)
    await mark_ok(ctx.redis, org, user, integration)
    if reconnect:
        job = SyncJob(job_id=uuid.uuid4().hex, org_id=org, user_id=user, integration=Integration(integration),
                      kind=SyncJobKind.FULL, reason=RECONNECTED, requested_at=dt.datetime.now(dt.UTC))
        await ctx.bus.publish(SYNC_JOBS.name, job.key, job)
    log.info("integration connected", org=org, user=user, integration=integration, provider=pending.provider,
             app_only=authorized.grant.app_only, reconnect=reconnect)
    return _connected_answer(request, provider, integration, account or f"tenant {authorized.grant.tenant_id}")


async def _was_connected(ctx: IngestContext, tokens: TokenStore, org: str, user: str, integration: str) -> bool:
    status = await StatusStore(ctx.redis).get(org, user, integration)
    if status is not None and status.state == AUTH_FAILED:
        return True
    try:
        return await tokens.get(org, user, integration) is not None
    except SecretBoxError:  # a grant sealed with a retired key: there was one
        return True


def _connected_answer(request: Request, provider: str, integration: str, account: str):
    """A page for the user's browser; JSON for a client that asks for it."""
    if "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"status": "connected", "provider": provider.lower(), "integration": integration,
                             "account": account})
    text = html.escape(f"{integration} is connected to {provider} as {account}.")
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Connected</title></head>"
        f"<body><h1>Connected</h1><p>{text}</p><p>You can close this window.</p></body></html>"
    )
