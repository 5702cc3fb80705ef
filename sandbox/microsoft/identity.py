"""Microsoft identity platform v2.0 endpoints, enough for MSAL Python to run its real flows.

MSAL with `instance_discovery=False` (or `validate_authority=False`) reads
`{authority}/v2.0/.well-known/openid-configuration` and needs `authorization_endpoint` and
`token_endpoint` from it; it takes the tenant from the token endpoint's path (msal/authority.py). It
decodes the id_token without checking its signature (msal/oauth2cli/oidc.py) but checks `nonce` against
the hash it sent, and builds the account key from `client_info` = base64url({"uid", "utid"}).

Endpoints (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
.../v2-oauth2-client-creds-grant-flow, .../v2-admin-consent):
- GET  /{tenant}/v2.0/.well-known/openid-configuration, GET /{tenant}/discovery/v2.0/keys
- GET  /{tenant}/oauth2/v2.0/authorize: consent is given at once for the account named by login_hint
  (else the account the client was issued with); answers by redirect (query, fragment) or form_post page
- GET  /{tenant}/adminconsent: redirects with admin_consent=True&tenant=
- POST /{tenant}/oauth2/v2.0/token: authorization_code (PKCE checked), refresh_token, client_credentials
Errors carry AADSTS codes in the shape Entra sends
(https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
"""
from __future__ import annotations

import base64
import html
import json
import secrets
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from sandbox.microsoft.identity_tokens import SHARED_TENANTS, AuthRequest, Identity, aad_error, b64url
from sandbox.state import Account, Grant


def _with_params(url: str, params: dict, fragment: bool = False) -> str:
    parts = urlsplit(url)
    if fragment:
        return urlunsplit(parts._replace(fragment=urlencode(params)))
    query = urlencode(parse_qsl(parts.query) + list(params.items()))
    return urlunsplit(parts._replace(query=query))


def router(sandbox) -> APIRouter:
    identity = Identity(sandbox)
    sandbox.state.on_reset(identity.reset)
    handlers = identity.grants()
    api = APIRouter(tags=["microsoft identity"])

    @api.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> dict:
        identity.require_tenant(tenant)
        base = str(request.base_url).rstrip("/")
        issuer_tenant = "{tenantid}" if tenant in SHARED_TENANTS else tenant
        return {
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "name", "tid", "ver", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    @api.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str) -> dict:
        identity.require_tenant(tenant)
        return identity.jwks()

    @api.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str, request: Request):
        identity.require_tenant(tenant)
        params = dict(request.query_params)
        app = identity.require_client(tenant, params.get("client_id"))
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise aad_error("invalid_request", 900144, "The request body must contain the following parameter: 'redirect_uri'.")
        mode = params.get("response_mode", "query")
        reply = {"state": params["state"]} if "state" in params else {}
        hint = params.get("login_hint")
        account = sandbox.state.account_by_email("microsoft", hint) if hint else app
        if params.get("response_type") != "code":
            reply.update(error="unsupported_response_type", error_description="AADSTS70005: response_type is not supported.")
        elif account is None or account.tenant_id != app.tenant_id:
            reply.update(error="invalid_request", error_description=f"AADSTS50034: The user account {hint} does not exist in the directory.")
        elif params.get("code_challenge") and params.get("code_challenge_method", "plain") not in ("S256", "plain"):
            reply.update(error="invalid_request", error_description="AADSTS501491: Invalid size of Code_Challenge parameter.")
        else:
            scopes = tuple(params.get("scope", "").split())
            code = sandbox.state.issue_auth_code(Grant(account.id, app.client_id, scopes, account.tenant_id), redirect_uri)
            with identity.lock:
                identity.pending[code] = AuthRequest(
                    app.client_id, " ".join(scopes), params.get("nonce"), params.get("code_challenge"),
                    params.get("code_challenge_method", "plain"),
                )
            client_info = b64url(json.dumps({"uid": account.id, "utid": account.tenant_id}).encode())
            reply.update(code=code, client_info=client_info, session_state=str(uuid.uuid4()))
        return _answer(redirect_uri, mode, reply)

    @api.get("/{tenant}/adminconsent")
    async def admin_consent(tenant: str, request: Request):
        identity.require_tenant(tenant)
        params = dict(request.query_params)
        app = identity.require_client(tenant, params.get("client_id"))
        reply = {"admin_consent": "True", "tenant": app.tenant_id}
        if "state" in params:
            reply["state"] = params["state"]
        return RedirectResponse(_with_params(params.get("redirect_uri", ""), reply), status_code=302)

    @api.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request):
        identity.require_tenant(tenant)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        handler = handlers.get(form.get("grant_type", ""))
        if handler is None:
            raise aad_error("unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{form.get('grant_type')}'.")
        app = _authenticate_client(identity, tenant, request, form)
        return handler(tenant, str(request.base_url).rstrip("/"), app, form)

    return api


def _authenticate_client(identity: Identity, tenant: str, request: Request, form: dict) -> Account:
    """client_secret_post or client_secret_basic; a wrong secret is 401 invalid_client."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    app = identity.require_client(tenant, client_id)
    if not secret:
        raise aad_error("invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", 401)
    if not secrets.compare_digest(secret, app.client_secret):
        raise aad_error(
            "invalid_client", 7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
            f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            401,
        )
    return app


def _answer(redirect_uri: str, mode: str, reply: dict):
    """Send the browser back to the app the way it asked: query (default), fragment or form_post."""
    if mode == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(v))}"/>' for k, v in reply.items()
        )
        page = (
            f'<html><head><title>Working...</title></head><body><form method="POST" name="hiddenform" '
            f'action="{html.escape(redirect_uri)}">{fields}<noscript><p>Script is disabled. Click Submit to '
            'continue.</p><input type="submit" value="Submit"/></noscript></form>'
            "<script>document.forms[0].submit()</script></body></html>"
        )
        return HTMLResponse(page)
    return RedirectResponse(_with_params(redirect_uri, reply, fragment=mode == "fragment"), status_code=302)
