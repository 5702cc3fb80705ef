"""Google's web-server OAuth flow with google-auth-oauthlib's Flow: offline access, narrowest scopes.

Scopes per integration (each checked against the method reference's "Authorization" section):
- google_calendar: calendar.events covers events list/insert/patch/delete and events.watch
  (https://developers.google.com/workspace/calendar/api/v3/reference/events/watch); the target calendar
  is checked writable with calendarList (accessRole), for which calendar.calendarlist.readonly is the
  narrowest scope accepted (https://developers.google.com/calendar/v3/reference/calendarList/list),
  narrower than calendar.readonly, which would also read every calendar's events.
- google_drive: drive.file (only files and folders the app created or was given).
- mail (Gmail): gmail.readonly (history, messages.get, users.watch).
Every flow adds `openid` and `userinfo.email` so the token answer carries an id_token naming the
account, compared with the CRM user's address. They are spelt as full URIs because Google answers
`email` with the URI and oauthlib treats any difference between asked and granted scopes as a change.

oauthlib refuses plain http for the authorization and token endpoints: the sandbox serves them over
https with its own CA (`provider_ca_bundle`).
"""
from __future__ import annotations

import asyncio
import ssl

import httpx
import jwt
import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import InsecureTransportError, OAuth2Error

from schemas import Integration
from services.common.logging import get_logger
from services.common.settings import Settings
from services.common.tokens import Grant
from services.ingest.oauth_common import Authorized, missing_scopes, provider_failed, provider_refused
from services.ingest.problems import Problem

log = get_logger(__name__)

CALLBACK_PATH = "/v1/oauth/google/callback"
IDENTITY_SCOPES = ("openid", "https://www.googleapis.com/auth/userinfo.email")
SCOPES: dict[Integration, tuple[str, ...]] = {
    Integration.GOOGLE_CALENDAR: (
        "https://www.googleapis.com/auth/calendar.events",
        "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    ),
    Integration.GOOGLE_DRIVE: ("https://www.googleapis.com/auth/drive.file",),
    Integration.MAIL: ("https://www.googleapis.com/auth/gmail.readonly",),
}
TOKEN_TIMEOUT_S = 15


def _flow(settings: Settings, integration: Integration, code_verifier: str | None = None) -> Flow:
    if not (settings.google_client_id and settings.google_client_secret):
        raise Problem(503, "provider-not-configured", "Google is not configured",
                      "set CRMSYNC_GOOGLE_CLIENT_ID and CRMSYNC_GOOGLE_CLIENT_SECRET")
    client = {"web": {"client_id": settings.google_client_id, "client_secret": settings.google_client_secret,
                      "auth_uri": settings.google_auth_url, "token_uri": settings.google_token_url}}
    return Flow.from_client_config(
        client, scopes=[*SCOPES[integration], *IDENTITY_SCOPES], code_verifier=code_verifier,
        redirect_uri=settings.public_base_url.rstrip("/") + CALLBACK_PATH,
    )


def authorization_url(settings: Settings, integration: Integration, state: str, login_hint: str) -> tuple[str, dict]:
    """The consent URL, and what the callback needs back (the PKCE verifier)."""
    flow = _flow(settings, integration)
    try:
        # prompt=consent: Google sends a refresh token only on consent, and a reconnect needs a new one.
        url, _ = flow.authorization_url(state=state, access_type="offline", prompt="consent", login_hint=login_hint)
    except InsecureTransportError:
        raise Problem(503, "provider-not-configured", "Google is misconfigured",
                      f"the authorization endpoint must be https: {settings.google_auth_url}") from None
    return url, {"code_verifier": flow.code_verifier}


async def exchange(settings: Settings, integration: Integration, code: str, flow_data: dict) -> Authorized:
    """Trade the code for tokens; the account is the id_token's verified email."""
    flow = _flow(settings, integration, flow_data.get("code_verifier"))
    token = await asyncio.to_thread(_fetch_token, flow, code, settings.provider_ca_bundle or True)
    if not token.get("refresh_token"):
        raise provider_failed("Google", "the token answer has no refresh token (offline access not granted)")
    scope = token.get("scope") or ()
    granted = tuple(scope.split() if isinstance(scope, str) else scope)  # oauthlib makes it a list
    missing = missing_scopes(SCOPES[integration], granted)
    if missing:
        raise provider_refused("Google", f"not every permission was granted; missing: {', '.join(missing)}")
    email = _verified_email(token.get("id_token"), settings.google_client_id)
    refresh_token = token["refresh_token"]
    return Authorized(email, Grant("google", email, refresh_token, granted),
                      discard=lambda: revoke(settings, refresh_token))


async def revoke(settings: Settings, refresh_token: str) -> None:
    """Best effort: a grant we refuse to keep should not stay live at Google, listed among the account's
    third-party access. Google's revocation endpoint sits beside its token endpoint (/token, /revoke)."""
    url = settings.google_token_url.rsplit("/", 1)[0] + "/revoke"
    verify = ssl.create_default_context(cafile=settings.provider_ca_bundle) if settings.provider_ca_bundle else True
    try:
        async with httpx.AsyncClient(verify=verify, timeout=TOKEN_TIMEOUT_S) as client:
            answer = await client.post(url, data={"token": refresh_token})
        if answer.status_code != 200:
            log.warning("google token not revoked", status=answer.status_code)
    except httpx.HTTPError as exc:
        log.warning("google token not revoked", error=type(exc).__name__)


def _fetch_token(flow: Flow, code: str, verify: str | bool) -> dict:
    try:
        return dict(flow.fetch_token(code=code, verify=verify, timeout=TOKEN_TIMEOUT_S))
    except Warning as changed:  # granted scopes differ from those asked: checked by the caller
        token = getattr(changed, "token", None)
        if token is None:
            raise
        return dict(token)
    except OAuth2Error as exc:
        raise provider_refused("Google", f"{exc.error}: {exc.description or ''}".strip(": ")) from None
    except InsecureTransportError:
        raise Problem(503, "provider-not-configured", "Google is misconfigured",
                      "the token endpoint must be https") from None
    except requests.RequestException as exc:
        raise provider_failed("Google", f"token endpoint unreachable: {type(exc).__name__}") from None


def _verified_email(id_token: str | None, client_id: str) -> str:
    """The id_token came straight from the token endpoint over TLS: its signature need not be checked
    (OpenID Connect Core 3.1.3.7), but its audience and the email's verification are."""
    if not id_token:
        raise provider_failed("Google", "the token answer has no id_token")
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise provider_failed("Google", f"unreadable id_token: {exc}") from None
    if claims.get("aud") != client_id:
        raise provider_failed("Google", "the id_token was issued to another client")
    if not claims.get("email") or claims.get("email_verified") is not True:
        raise provider_refused("Google", "the Google account has no verified email address")
    return str(claims["email"])
