"""Sandbox accounts and the OAuth tokens issued to them: kept in memory, reset as a whole.

Each provider module keeps its own per-account data (calendars, mailboxes, Graph events) in a store it
registers here, so that `/_sandbox/reset` clears everything in one place.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Provider = Literal["google", "microsoft"]


@dataclass
class Account:
    """A person at a provider: a Google account or a Microsoft 365 user in a tenant."""

    id: str
    provider: Provider
    email: str
    display_name: str
    tenant_id: str | None = None
    client_id: str = ""
    client_secret: str = ""
    scopes: tuple[str, ...] = ()


@dataclass
class Grant:
    """What a token stands for: the account (None for an app-only client_credentials token) and client."""

    account_id: str | None
    client_id: str
    scopes: tuple[str, ...]
    tenant_id: str | None = None
    expires_at: float = 0.0


@dataclass
class SandboxState:
    accounts: dict[str, Account] = field(default_factory=dict)
    access_tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    auth_codes: dict[str, tuple[Grant, str]] = field(default_factory=dict)
    revoked_refresh_tokens: set[str] = field(default_factory=set)
    access_token_lifetime_s: int = 3600
    lock: threading.RLock = field(default_factory=threading.RLock)
    _reset_hooks: list[Callable[[], None]] = field(default_factory=list)

    # --- accounts -------------------------------------------------------------------------------
    def create_account(
        self,
        provider: Provider,
        email: str,
        display_name: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> Account:
        email = email.strip()
        with self.lock:
            for existing in self.accounts.values():
                if existing.provider == provider and existing.email.lower() == email.lower():
                    return existing
            account = Account(
                id=_new_id(provider),
                provider=provider,
                email=email,
                display_name=display_name or email.split("@")[0],
                tenant_id=tenant_id,
                client_id=client_id or f"{provider}-client-{secrets.token_hex(4)}",
                client_secret=client_secret or secrets.token_urlsafe(24),
            )
            self.accounts[account.id] = account
            return account

    def account_by_email(self, provider: Provider, email: str) -> Account | None:
        for account in self.accounts.values():
            if account.provider == provider and account.email.lower() == email.lower():
                return account
        return None

    # --- tokens ---------------------------------------------------------------------------------
    def issue_access_token(self, grant: Grant) -> tuple[str, int]:
        token = "at-" + secrets.token_urlsafe(24)
        lifetime = self.access_token_lifetime_s
        with self.lock:
            self.access_tokens[token] = Grant(
                grant.account_id, grant.client_id, grant.scopes, grant.tenant_id, time.time() + lifetime
            )
        return token, lifetime

    def issue_refresh_token(self, grant: Grant) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = grant
        return token

    def issue_auth_code(self, grant: Grant, redirect_uri: str) -> str:
        code = "code-" + secrets.token_urlsafe(16)
        with self.lock:
            self.auth_codes[code] = (grant, redirect_uri)
        return code

    def redeem_auth_code(self, code: str) -> tuple[Grant, str] | None:
        with self.lock:
            return self.auth_codes.pop(code, None)

    def grant_for_refresh_token(self, token: str) -> Grant | None:
        if token in self.revoked_refresh_tokens:
            return None
        return self.refresh_tokens.get(token)

    def revoke_account_tokens(self, account_id: str) -> int:
        """What a user does by changing password or removing the app's access: every token stops."""
        with self.lock:
            revoked = [t for t, g in self.refresh_tokens.items() if g.account_id == account_id]
            self.revoked_refresh_tokens.update(revoked)
            for t in [t for t, g in self.access_tokens.items() if g.account_id == account_id]:
                del self.access_tokens[t]
            return len(revoked)

    def grant_for_access_token(self, token: str) -> Grant | None:
        grant = self.access_tokens.get(token)
        if grant is None or grant.expires_at < time.time():
            return None
        return grant

    # --- lifecycle ------------------------------------------------------------------------------
    def on_reset(self, hook: Callable[[], None]) -> None:
        self._reset_hooks.append(hook)

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.access_tokens.clear()
            self.refresh_tokens.clear()
            self.auth_codes.clear()
            self.revoked_refresh_tokens.clear()
            for hook in self._reset_hooks:
                hook()


def _new_id(provider: Provider) -> str:
    # Graph user ids are GUIDs; Google ids are opaque digits. Tests only need uniqueness.
    if provider == "microsoft":
        import uuid

        return str(uuid.uuid4())
    return str(secrets.randbelow(10**20) + 10**20)
