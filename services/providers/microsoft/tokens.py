"""Graph access tokens from MSAL for one grant: a user's delegated refresh token, or a tenant's app-only
consent.

MSAL keeps the tokens in its own cache: a delegated grant is redeemed once with
`acquire_token_by_refresh_token` (which stores the account, access and refresh tokens), later calls
are `acquire_token_silent` against that account (the cached access token until it nears expiry, then
the cached refresh token); app-only grants use `acquire_token_for_client`, which checks the cache
itself. So many Graph calls cost one call to the identity platform per token lifetime.

MSAL is blocking (requests): each acquisition runs in a thread, one at a time per grant so that
concurrent Graph calls wait for one refresh instead of racing several. The token it answers is kept
here until _EARLY_S before it expires (when MSAL would renew it anyway): asking MSAL's cache for
every Graph call cost a thread hop and a cache search per call, a tenth of a busy worker's CPU. A revoked or expired grant
(`invalid_grant` and kin) is AuthFailed, what the integration's status shows; an unreachable or
failing identity platform is a TransientError, retried like any other.
"""
from __future__ import annotations

import asyncio
import time

import msal
import requests

from services.calendar_sync.ports import AuthFailed
from services.common.retry import TransientError
from services.common.settings import Settings
from services.common.tokens import Grant

# The resource stays Graph's even when the base URL points at the sandbox: it names an API, not a host.
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
# MSAL adds these itself and refuses them as input.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
# Token endpoint errors that only a person (user or admin) can fix (RFC 6749 section 5.2, and
# https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
_AUTH_ERRORS = frozenset({
    "invalid_grant", "interaction_required", "consent_required", "login_required",
    "invalid_client", "unauthorized_client", "invalid_scope", "invalid_tenant",
})
_MSAL_HTTP_TIMEOUT_S = 30
_EARLY_S = 300.0  # a kept token is renewed this long before it expires (MSAL's own margin: 5 minutes)


def identity_session(settings: Settings) -> requests.Session:
    """The HTTP session MSAL uses: verifying the identity host against provider_ca_bundle when set.

    With a pinned CA the environment is ignored: requests lets REQUESTS_CA_BUNDLE override a
    session's `verify`, which would silently trust another CA than the one configured.
    """
    session = requests.Session()
    if settings.provider_ca_bundle:
        session.trust_env = False
        session.verify = settings.provider_ca_bundle
    return session


class MsalTokens:
    """Access tokens for one Microsoft grant, from MSAL's cache or the identity platform."""

    def __init__(self, settings: Settings, grant: Grant, session: requests.Session | None = None):
        if grant.provider != "microsoft":
            raise ValueError(f"not a Microsoft grant: {grant.provider}")
        if not grant.app_only and not grant.refresh_token:
            raise ValueError("a delegated Microsoft grant needs a refresh token")
        if grant.app_only and not grant.tenant_id:
            raise ValueError("an app-only Microsoft grant needs its tenant")
        self.settings = settings
        self.grant = grant
        self.tenant = grant.tenant_id or settings.microsoft_tenant
        self.scopes = [s for s in grant.scopes if s not in _RESERVED_SCOPES] or [GRAPH_DEFAULT_SCOPE]
        self._session = session or identity_session(settings)
        self._app: msal.ConfidentialClientApplication | None = None
        self._stale = False
        self._lock = asyncio.Lock()
        self._kept: tuple[str, float] | None = None  # (access token, monotonic time to renew it)

    async def access_token(self) -> str:
        if (token := self._kept_token()) is not None:
            return token
        async with self._lock:
            # renewed meanwhile, perhaps, by the call this one waited for
            return self._kept_token() or await asyncio.to_thread(self._acquire)

    def _kept_token(self) -> str | None:
        """The token kept from the last acquisition, while it is not due for renewal."""
        kept = self._kept
        return kept[0] if kept is not None and kept[1] > time.monotonic() else None

    def close(self) -> None:
        """Close the identity platform connections MSAL keeps open."""
        self._session.close()

    def invalidate(self) -> None:
        """Graph refused the token: the next acquisition asks the identity platform, not the cache."""
        self._stale = True
        self._kept = None

    # --- in a worker thread -------------------------------------------------------------------------
    def _acquire(self) -> str:
        try:
            app = self._application()
            result = self._app_only(app) if self.grant.app_only else self._delegated(app)
        except requests.RequestException as exc:
            raise TransientError(f"Microsoft identity platform unreachable: {exc}") from exc
        except ValueError as exc:  # MSAL: the authority's discovery answered 4xx (no such tenant)
            raise AuthFailed(f"Microsoft authority refused: {exc}") from exc
        return self._token_of(result)

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built lazily: MSAL reads the authority's openid-configuration over the network when built.
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self.settings.microsoft_client_id,
                client_credential=self.settings.microsoft_client_secret,
                authority=f"{self.settings.microsoft_authority_base_url.rstrip('/')}/{self.tenant}",
                http_client=self._session,
                instance_discovery=False,  # the authority may be a sovereign cloud or the sandbox
                timeout=_MSAL_HTTP_TIMEOUT_S,
            )
        return self._app

    def _delegated(self, app: msal.ConfidentialClientApplication) -> dict:
        accounts = app.get_accounts()
        if accounts:
            result = app.acquire_token_silent_with_error(self.scopes, accounts[0], force_refresh=self._stale)
            if result and "access_token" in result:
                return result
        # First use, or the cached refresh token was refused: redeem the stored one.
        return app.acquire_token_by_refresh_token(self.grant.refresh_token, self.scopes)

    def _app_only(self, app: msal.ConfidentialClientApplication) -> dict:
        if self._stale:
            app.remove_tokens_for_client()
        return app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])

    def _token_of(self, result: dict) -> str:
        if "access_token" in result:
            self._stale = False
            lifetime = float(result.get("expires_in") or 0)
            self._kept = (result["access_token"], time.monotonic() + lifetime - _EARLY_S)
            return result["access_token"]
        error = result.get("error", "unknown_error")
        description = (result.get("error_description") or "").splitlines()[0:1]
        reason = f"{error}: {description[0]}" if description else error
        if error in _AUTH_ERRORS:
            raise AuthFailed(reason)
        raise TransientError(f"Microsoft token endpoint: {reason}")
