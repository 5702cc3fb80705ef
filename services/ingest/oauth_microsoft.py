"""Microsoft identity platform with MSAL: delegated auth code flow for a user, admin consent for a tenant.

Delegated (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow): MSAL's
`initiate_auth_code_flow` builds the URL with PKCE and a nonce; its flow dict waits in Redis under the
state and `acquire_token_by_auth_code_flow` finishes it. MSAL adds openid, profile and offline_access
itself (offline_access brings the refresh token); the account is the id_token's preferred_username.
The answer comes back by form_post, which keeps the code out of URLs and logs (RFC 9700 section 4.3.1).

Admin consent (https://learn.microsoft.com/entra/identity-platform/v2-admin-consent): a tenant's admin
grants the app its application permissions; the callback names the tenant, and a client credentials
token for Graph's `/.default` proves the consent before anything is stored. No user signs in, so
there is no address to compare.
"""
from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

import msal
import requests

from schemas import Integration
from services.common.settings import Settings
from services.common.tokens import Grant
from services.ingest.oauth_common import Authorized, missing_scopes, provider_failed, provider_refused
from services.ingest.problems import Problem

CALLBACK_PATH = "/v1/oauth/microsoft/callback"
SCOPES: dict[Integration, tuple[str, ...]] = {
    Integration.MICROSOFT_CALENDAR: ("Calendars.ReadWrite", "User.Read"),
    Integration.MICROSOFT_CONTACTS: ("Contacts.ReadWrite", "User.Read"),
}
APP_ONLY_SCOPE = "https://graph.microsoft.com/.default"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,127}$")


def _redirect_uri(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + CALLBACK_PATH


def _app(settings: Settings, tenant: str) -> msal.ConfidentialClientApplication:
    """A fresh app (and token cache) per flow: ingest keeps no user's tokens in memory.
    Blocking: MSAL reads the authority's OpenID configuration here."""
    if not (settings.microsoft_client_id and settings.microsoft_client_secret):
        raise Problem(503, "provider-not-configured", "Microsoft is not configured",
                      "set CRMSYNC_MICROSOFT_CLIENT_ID and CRMSYNC_MICROSOFT_CLIENT_SECRET")
    session = requests.Session()
    session.headers["Connection"] = "close"
    if settings.provider_ca_bundle:
        session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides session.verify
        session.verify = settings.provider_ca_bundle
    try:
        return msal.ConfidentialClientApplication(
            settings.microsoft_client_id, client_credential=settings.microsoft_client_secret,
            authority=f"{settings.microsoft_authority_base_url.rstrip('/')}/{tenant}", http_client=session,
            instance_discovery=False,  # our own configured authority: nothing to validate it against
        )
    except (ValueError, requests.RequestException) as exc:
        raise provider_failed("Microsoft", f"the authority cannot be reached: {type(exc).__name__}: {exc}") from None


async def authorization_url(settings: Settings, integration: Integration, state: str, login_hint: str,
                            admin_consent: bool) -> tuple[str, dict]:
    """The URL to send the user (or the tenant's admin) to, and what the callback needs back."""
    if admin_consent:
        query = urlencode({"client_id": settings.microsoft_client_id, "redirect_uri": _redirect_uri(settings),
                           "state": state})
        return f"{settings.microsoft_authority_base_url.rstrip('/')}/{settings.microsoft_tenant}/adminconsent?{query}", {}

    def initiate() -> dict:
        app = _app(settings, settings.microsoft_tenant)
        return app.initiate_auth_code_flow(list(SCOPES[integration]), redirect_uri=_redirect_uri(settings),
                                           state=state, login_hint=login_hint, response_mode="form_post")

    flow = await asyncio.to_thread(initiate)
    return flow["auth_uri"], flow


async def exchange(settings: Settings, integration: Integration, flow: dict, params: dict) -> Authorized:
    """Redeem the code through MSAL (it checks state, PKCE and the id_token's nonce)."""

    def redeem() -> dict:
        app = _app(settings, settings.microsoft_tenant)
        try:
            return app.acquire_token_by_auth_code_flow(flow, params)
        except ValueError as exc:  # MSAL's own checks of the callback against the flow
            raise provider_refused("Microsoft", str(exc)) from None
        except requests.RequestException as exc:
            raise provider_failed("Microsoft", f"token endpoint unreachable: {type(exc).__name__}") from None

    result = await asyncio.to_thread(redeem)
    _raise_for_error(result)
    if not result.get("refresh_token"):
        raise provider_failed("Microsoft", "the token answer has no refresh token (offline_access not granted)")
    granted = tuple(str(result.get("scope", "")).split())
    missing = missing_scopes(SCOPES[integration], granted)
    if missing:
        raise provider_refused("Microsoft", f"not every permission was granted; missing: {', '.join(missing)}")
    claims = result.get("id_token_claims") or {}
    email = claims.get("preferred_username") or claims.get("email")
    if not email:
        raise provider_failed("Microsoft", "the id_token names no account (preferred_username)")
    return Authorized(email, Grant("microsoft", email, result["refresh_token"], granted, tenant_id=claims.get("tid")))


async def confirm_admin_consent(settings: Settings, params: dict) -> Authorized:
    """The admin consented for `tenant`: prove it with an app-only token before keeping anything."""
    if params.get("admin_consent", "").lower() != "true":
        raise provider_refused("Microsoft", "the administrator did not consent")
    tenant = params.get("tenant", "")
    if not _TENANT.match(tenant):
        raise Problem(400, "invalid-callback", "Invalid callback", "the admin consent callback names no valid tenant")

    def app_only_token() -> dict:
        try:
            return _app(settings, tenant).acquire_token_for_client([APP_ONLY_SCOPE])
        except requests.RequestException as exc:
            raise provider_failed("Microsoft", f"token endpoint unreachable: {type(exc).__name__}") from None

    _raise_for_error(await asyncio.to_thread(app_only_token))
    return Authorized(None, Grant("microsoft", "", None, (APP_ONLY_SCOPE,), tenant_id=tenant, app_only=True))


def _raise_for_error(result: dict) -> None:
    if "error" in result:
        description = str(result.get("error_description", "")).splitlines()[0] if result.get("error_description") else ""
        raise provider_refused("Microsoft", f"{result['error']}: {description}".rstrip(": "))
