"""`/_sandbox/`: the sandbox's own API for tests, benchmarks and people. Never faulted, never counted."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from sandbox.faults import FaultRule
from sandbox.quotas import QuotaSettings
from sandbox.state import Grant


class NewAccount(BaseModel):
    provider: Literal["google", "microsoft"]
    email: str
    display_name: str | None = None
    tenant_id: str | None = None
    client_id: str | None = Field(None, description="the OAuth client (app) this account has granted; "
                                  "accounts that share one act as one app's users")
    client_secret: str | None = None


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/_sandbox", tags=["sandbox control"])
    state = sandbox.state

    @api.post("/accounts", status_code=201)
    def create_account(body: NewAccount) -> dict:
        """Create (or return) an account and hand out credentials a client can use at once."""
        tenant = body.tenant_id or ("sandbox-tenant" if body.provider == "microsoft" else None)
        account = state.create_account(body.provider, body.email, body.display_name, tenant,
                                       body.client_id, body.client_secret)
        grant = Grant(account.id, account.client_id, account.scopes, account.tenant_id)
        access_token, expires_in = state.issue_access_token(grant)
        return {
            "id": account.id,
            "provider": account.provider,
            "email": account.email,
            "display_name": account.display_name,
            "tenant_id": account.tenant_id,
            "client_id": account.client_id,
            "client_secret": account.client_secret,
            "refresh_token": state.issue_refresh_token(grant),
            "access_token": access_token,
            "expires_in": expires_in,
            "token_uri": f"{sandbox.config.http_base_url}/token",
            "authority": f"{sandbox.config.identity_base_url}/{account.tenant_id}" if account.tenant_id else None,
        }

    @api.get("/accounts")
    def list_accounts() -> list[dict]:
        return [
            {"id": a.id, "provider": a.provider, "email": a.email, "tenant_id": a.tenant_id}
            for a in state.accounts.values()
        ]

    @api.post("/accounts/{account_id}/revoke")
    def revoke(account_id: str) -> dict:
        """Revoke every token of the account: the next refresh answers invalid_grant."""
        if account_id not in state.accounts:
            raise HTTPException(404, f"no sandbox account {account_id}")
        return {"revoked_refresh_tokens": state.revoke_account_tokens(account_id)}

    @api.post("/faults", status_code=201)
    def add_fault(rule: FaultRule) -> dict:
        sandbox.faults.add(rule)
        return {"rules": len(sandbox.faults.rules)}

    @api.delete("/faults")
    def clear_faults() -> dict:
        sandbox.faults.clear()
        return {"rules": 0}

    @api.get("/quotas")
    def get_quotas() -> QuotaSettings:
        return sandbox.quotas.settings

    @api.put("/quotas")
    def set_quotas(settings: QuotaSettings) -> QuotaSettings:
        """Turn provider quotas on (`google.enabled`, `graph.enabled`) with their limits; usage restarts
        from zero. Off by default and after /_sandbox/reset."""
        sandbox.quotas.configure(settings)
        return settings

    @api.get("/counters")
    def counters() -> dict:
        return {"calls": dict(sandbox.faults.calls), "injected": dict(sandbox.faults.injected)}

    @api.post("/reset")
    def reset() -> dict:
        sandbox.reset()
        return {"reset": True}

    return api
