"""Google's OAuth 2.0 endpoints for web server apps: authorization, token and revocation.

Follows https://developers.google.com/identity/protocols/oauth2/web-server: the authorization endpoint
sends the browser back to `redirect_uri` with `code` and `state` (or `error`), the token endpoint trades a
code or a refresh token for tokens, and only `access_type=offline` brings a refresh token. Errors are the
RFC 6749 bodies Google sends (`invalid_grant`, `invalid_client`, `redirect_uri_mismatch`...).

Sandbox deviations: there is no sign-in page, so the account is the one named by `login_hint` and consent
is given at once; any http(s) redirect_uri is accepted (there is no console to register them in); a
refresh token is issued on every offline consent, not only the first.

PKCE (RFC 7636), as Google applies it: a code asked for with `code_challenge` (S256 or plain) is only
traded with the matching `code_verifier`, else `invalid_grant` ("Missing code verifier." / "Invalid code
verifier.").

OpenID Connect: a code granted with the `openid` scope brings an `id_token` (RS256, `iss`
https://accounts.google.com, `aud`/`azp` the client, `sub` the account id, and `email`/`email_verified`
when `email` or `.../auth/userinfo.email` was granted), as in
https://developers.google.com/identity/openid-connect/openid-connect#obtainuserinfo. The sandbox does
not publish its signing key: a client that got the token straight from the token endpoint over TLS
may skip the signature (OpenID Connect Core 3.1.3.7).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from sandbox.errors import oauth_error
from sandbox.state import Account, Grant


def _error_page(error: str, description: str, status: int = 400) -> JSONResponse:
    """What the browser shows when Google cannot safely redirect (RFC 6749 section 4.1.2.1): an unknown
    client or a missing/invalid redirect_uri is never answered with a redirect."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _redirect(redirect_uri: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302)


def _client_credentials(request: Request, form: dict) -> tuple[str | None, str | None]:
    """client_secret_post or client_secret_basic, as Google's token endpoint accepts both."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(client_id), unquote(secret)
        except (binascii.Error, UnicodeDecodeError):
            return None, None
    return form.get("client_id"), form.get("client_secret")


@dataclass(frozen=True)
class CodeTerms:
    """What the authorization request asked of its code, checked when the code is traded."""

    offline: bool
    challenge: str | None = None
    method: str = "plain"

    def verifier_problem(self, verifier: str | None) -> str | None:
        if self.challenge is None:
            return None
        if not verifier:
            return "Missing code verifier."
        derived = verifier
        if self.method == "S256":
            derived = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        return None if derived == self.challenge else "Invalid code verifier."


EMAIL_SCOPES = ("email", "https://www.googleapis.com/auth/userinfo.email")


def _id_token(key, account: Account, grant: Grant, lifetime_s: int) -> str:
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "azp": grant.client_id, "aud": grant.client_id,
              "sub": account.id, "iat": now, "exp": now + lifetime_s}
    if any(scope in grant.scopes for scope in EMAIL_SCOPES):
        claims.update(email=account.email, email_verified=True)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "sandbox"})


def router(sandbox) -> APIRouter:
    api = APIRouter(tags=["google oauth"])
    state = sandbox.state
    code_terms: dict[str, CodeTerms] = {}
    state.on_reset(code_terms.clear)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def client_secret(client_id: str | None) -> str | None:
        """Each sandbox Google account carries an OAuth client; any of them may ask any account."""
        for account in list(state.accounts.values()):
            if account.provider == "google" and account.client_id == client_id:
                return account.client_secret
        return None

    def token_answer(grant: Grant, refresh_token: str | None, with_id_token: bool = False) -> JSONResponse:
        access_token, expires_in = state.issue_access_token(grant)
        body = {"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}
        if grant.scopes:
            body["scope"] = " ".join(grant.scopes)
        if refresh_token:
            body["refresh_token"] = refresh_token
        account = state.accounts.get(grant.account_id or "")
        if with_id_token and "openid" in grant.scopes and account is not None:
            body["id_token"] = _id_token(signing_key, account, grant, expires_in)
        # Google sends no-store token answers (RFC 6749 section 5.1).
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @api.get("/o/oauth2/v2/auth")
    def authorize(request: Request):
        params = request.query_params
        client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
        if not client_id:
            return _error_page("invalid_request", "Missing required parameter: client_id")
        if client_secret(client_id) is None:
            return _error_page("invalid_client", "The OAuth client was not found.", 401)
        if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _error_page("invalid_request", "Missing or invalid parameter: redirect_uri")
        given_state = params.get("state")
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", state=given_state)
        scope = params.get("scope")
        if not scope:
            return _redirect(redirect_uri, error="invalid_request", error_description="Missing required parameter: scope",
                             state=given_state)
        method = params.get("code_challenge_method", "plain")
        if params.get("code_challenge") and method not in ("S256", "plain"):
            return _redirect(redirect_uri, error="invalid_request", error_description="Invalid code_challenge_method",
                             state=given_state)
        account: Account | None = state.account_by_email("google", params.get("login_hint", ""))
        if account is None:
            # No such user to sign in: as if the user had refused consent.
            return _redirect(redirect_uri, error="access_denied", state=given_state)
        code = state.issue_auth_code(Grant(account.id, client_id, tuple(scope.split())), redirect_uri)
        code_terms[code] = CodeTerms(params.get("access_type") == "offline", params.get("code_challenge"), method)
        return _redirect(redirect_uri, code=code, scope=scope, state=given_state)

    @api.post("/token")
    async def token(request: Request):
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        client_id, secret = _client_credentials(request, form)
        known_secret = client_secret(client_id)
        if known_secret is None:
            raise oauth_error("invalid_client", "The OAuth client was not found.", 401)
        if secret != known_secret:
            raise oauth_error("invalid_client", "Unauthorized", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            for name in ("code", "redirect_uri"):
                if not form.get(name):
                    raise oauth_error("invalid_request", f"Missing required parameter: {name}")
            redeemed = state.redeem_auth_code(form["code"])
            if redeemed is None:
                raise oauth_error("invalid_grant", "Malformed auth code.")
            grant, redirect_uri = redeemed
            terms = code_terms.pop(form["code"], CodeTerms(offline=False))
            if grant.client_id != client_id:
                raise oauth_error("invalid_grant", "Bad Request")
            if redirect_uri != form["redirect_uri"]:
                raise oauth_error("redirect_uri_mismatch", "Bad Request")
            problem = terms.verifier_problem(form.get("code_verifier"))
            if problem:
                raise oauth_error("invalid_grant", problem)
            refresh_token = state.issue_refresh_token(grant) if terms.offline else None
            return token_answer(grant, refresh_token, with_id_token=True)
        if grant_type == "refresh_token":
            if not form.get("refresh_token"):
                raise oauth_error("invalid_request", "Missing required parameter: refresh_token")
            grant = state.grant_for_refresh_token(form["refresh_token"])
            if grant is None:
                raise oauth_error("invalid_grant", "Token has been expired or revoked.")
            if grant.client_id != client_id:
                raise oauth_error("unauthorized_client", "Unauthorized")
            return token_answer(grant, None)
        raise oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type or ''}")

    @api.post("/revoke")
    async def revoke(request: Request):
        """https://oauth2.googleapis.com/revoke: revoking either token ends the whole grant."""
        form = dict(parse_qsl((await request.body()).decode()))
        token_value = form.get("token") or request.query_params.get("token", "")
        with state.lock:
            grant = state.refresh_tokens.get(token_value) or state.access_tokens.get(token_value)
            if grant is None or token_value in state.revoked_refresh_tokens:
                raise oauth_error("invalid_token", "Token expired or revoked")

            def same(other: Grant) -> bool:
                return other.account_id == grant.account_id and other.client_id == grant.client_id

            state.revoked_refresh_tokens.update(t for t, g in state.refresh_tokens.items() if same(g))
            for stale in [t for t, g in state.access_tokens.items() if same(g)]:
                del state.access_tokens[stale]
        return JSONResponse({})

    return api
