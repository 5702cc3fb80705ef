"""Token issuing for the Microsoft identity endpoints: client checks, the three grants, id_tokens.

Grant rules follow https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow (code +
PKCE), .../v2-oauth2-client-creds-grant-flow (`/.default` scopes only, tenant-specific endpoint) and
.../refresh-tokens (a revoked grant answers invalid_grant AADSTS50173). Error codes from
https://learn.microsoft.com/entra/identity-platform/reference-error-codes.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.responses import JSONResponse

from sandbox.errors import ProviderError
from sandbox.state import Account, Grant

SHARED_TENANTS = ("common", "organizations")


@dataclass(frozen=True)
class AuthRequest:
    """What /authorize saw that the token endpoint must check when the code comes back."""

    client_id: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str


def aad_error(error: str, code: int, message: str, status: int = 400) -> ProviderError:
    """Entra's token endpoint error: RFC 6749 fields plus AADSTS code, trace and correlation ids."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return ProviderError(JSONResponse(body, status_code=status))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Identity:
    """The identity endpoints' own state: pending auth codes' checks and the id_token signing key."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.pending: dict[str, AuthRequest] = {}
        self.redeemed: set[str] = set()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = b64url(secrets.token_bytes(12))

    def reset(self) -> None:
        with self.lock:
            self.pending.clear()
            self.redeemed.clear()

    # --- directory look-ups -------------------------------------------------------------------------
    def known_tenant(self, tenant: str) -> bool:
        accounts = self.sandbox.state.accounts.values()
        return tenant in SHARED_TENANTS or any(a.provider == "microsoft" and a.tenant_id == tenant for a in accounts)

    def client(self, client_id: str) -> Account | None:
        """The app registration behind a client id: the account it was issued with (one per client)."""
        for account in list(self.sandbox.state.accounts.values()):
            if account.provider == "microsoft" and account.client_id == client_id:
                return account
        return None

    def require_tenant(self, tenant: str) -> None:
        if not self.known_tenant(tenant):
            raise aad_error(
                "invalid_tenant", 90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )

    def require_client(self, tenant: str, client_id: str | None) -> Account:
        app = self.client(client_id or "")
        if app is None or (tenant not in SHARED_TENANTS and app.tenant_id != tenant):
            raise aad_error(
                "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        return app

    # --- tokens -----------------------------------------------------------------------------------
    def id_token(self, base: str, account: Account, client_id: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "aud": client_id,
            "iss": f"{base}/{account.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + self.sandbox.state.access_token_lifetime_s,
            "name": account.display_name,
            "oid": account.id,
            "preferred_username": account.email,
            "sub": b64url(hashlib.sha256(f"{account.id}:{client_id}".encode()).digest()),
            "tid": account.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.key_id})

    def user_tokens(self, base: str, grant: Grant, form: dict, nonce: str | None = None) -> dict:
        """The answer to a delegated grant: access, refresh and id tokens, and client_info if asked."""
        state = self.sandbox.state
        account = state.accounts[grant.account_id]
        access_token, lifetime = state.issue_access_token(grant)
        answer = {
            "token_type": "Bearer",
            "scope": " ".join(grant.scopes),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        }
        if "offline_access" in grant.scopes:
            answer["refresh_token"] = state.issue_refresh_token(grant)
        if "openid" in grant.scopes:
            answer["id_token"] = self.id_token(base, account, grant.client_id, nonce)
        if form.get("client_info") == "1":
            answer["client_info"] = b64url(json.dumps({"uid": account.id, "utid": account.tenant_id}).encode())
        return answer

    def jwks(self) -> dict:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.key_id, "use": "sig", "alg": "RS256"}]}


    # --- grants -----------------------------------------------------------------------------------
    def authorization_code(self, tenant: str, base: str, app: Account, form: dict) -> dict:
        code = form.get("code")
        if not code:
            raise aad_error("invalid_request", 900144, "The request body must contain the following parameter: 'code'.")
        redeemed = self.sandbox.state.redeem_auth_code(code)
        with self.lock:
            request = self.pending.pop(code, None)
            already_used = code in self.redeemed
            self.redeemed.add(code)
        if redeemed is None or request is None:
            if already_used:
                raise aad_error("invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.")
            raise aad_error("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        grant, redirect_uri = redeemed
        if request.client_id != app.client_id:
            raise aad_error("invalid_grant", 700005, "Provided Authorization Code is intended to use against other tenant, thus rejected.")
        if form.get("redirect_uri") != redirect_uri:
            raise aad_error("invalid_grant", 500112, f"The reply address '{form.get('redirect_uri')}' does not match the reply address '{redirect_uri}' provided when requesting Authorization code.")
        if request.code_challenge and not _pkce_matches(request, form.get("code_verifier", "")):
            raise aad_error("invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
        return self.user_tokens(base, grant, form, nonce=request.nonce)

    def refresh_token(self, tenant: str, base: str, app: Account, form: dict) -> dict:
        token = form.get("refresh_token", "")
        state = self.sandbox.state
        grant = state.grant_for_refresh_token(token)
        if grant is None and token in state.revoked_refresh_tokens:
            raise aad_error(
                "invalid_grant", 50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user "
                "might have changed or reset their password.",
            )
        if grant is None or grant.account_id is None:
            raise aad_error("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if grant.client_id != app.client_id:
            raise aad_error("invalid_grant", 700005, "The refresh token was issued to a different client.")
        scopes = tuple(form.get("scope", "").split()) or grant.scopes
        renewed = Grant(grant.account_id, grant.client_id, tuple(dict.fromkeys(scopes + ("offline_access",))), grant.tenant_id)
        return self.user_tokens(base, renewed, form)

    def client_credentials(self, tenant: str, base: str, app: Account, form: dict) -> dict:
        if tenant in SHARED_TENANTS:
            raise aad_error("invalid_request", 50059, "No tenant-identifying information found in either the request or implied by any provided credentials.")
        scopes = tuple(form.get("scope", "").split())
        wrong = next((s for s in scopes if not s.endswith("/.default")), None) if scopes else "''"
        if wrong:
            raise aad_error(
                "invalid_scope", 1002012,
                f"The provided value for scope {wrong} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        access_token, lifetime = self.sandbox.state.issue_access_token(Grant(None, app.client_id, scopes, app.tenant_id))
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token}

    def grants(self) -> dict[str, Callable[[str, str, Account, dict], dict]]:
        return {
            "authorization_code": self.authorization_code,
            "refresh_token": self.refresh_token,
            "client_credentials": self.client_credentials,
        }


def _pkce_matches(request: AuthRequest, verifier: str) -> bool:
    if request.code_challenge_method == "S256":
        verifier = b64url(hashlib.sha256(verifier.encode()).digest())
    return secrets.compare_digest(verifier, request.code_challenge or "")
