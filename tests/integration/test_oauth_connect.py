"""Connecting provider accounts: ingest's OAuth flows against the sandbox, the test playing the browser.

The module serves its own ingest, whose public_base_url is its own address and whose Google and
Microsoft clients are sandbox app registrations; provider endpoints are the sandbox's https ones,
trusted through the test CA. The sandbox is not reset between these tests (the clients live in it):
each test uses its own org and accounts.
"""
import asyncio
import re
import ssl
import subprocess
import sys
import uuid
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import google.auth.transport.requests
import google.oauth2.credentials
import httpx
import pytest
import requests
from google.auth.exceptions import RefreshError
from prometheus_client import REGISTRY

from schemas import SyncJob
from services.common.auth_status import mark_auth_failed
from services.common.secrets import SecretBox
from services.common.state import StatusStore, connect, key
from services.common.tokens import Grant, TokenStore
from services.ingest.app import create_app
from tests.fixtures.ingest import ServedApp
from tests.fixtures.net import free_port, wait_for
from tests.fixtures.processes import ROOT, settings_env
from tests.fixtures.topics import read_topic
from tests.sandbox.microsoft_support import GRAPH_SCOPE, graph, msal_app
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration

CALENDAR_SCOPES = {"https://www.googleapis.com/auth/calendar.events",
                   "https://www.googleapis.com/auth/calendar.calendarlist.readonly"}


def sandbox_account(sandbox_server, provider: str, email: str) -> dict:
    r = httpx.post(f"{sandbox_server.http_url}/_sandbox/accounts", json={"provider": provider, "email": email})
    r.raise_for_status()
    return r.json()


def new_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@contoso.test"


@pytest.fixture(scope="module")
def apps(sandbox_server) -> dict:
    """crmsync's app registrations at Google and Microsoft (in the sandbox's default tenant)."""
    return {"google": sandbox_account(sandbox_server, "google", new_email("crmsync-app")),
            "microsoft": sandbox_account(sandbox_server, "microsoft", new_email("crmsync-app"))}


@pytest.fixture(scope="module")
def oauth_ingest(settings, sandbox_server, apps):
    port = free_port()
    provider = sandbox_server.https_url
    served_settings = settings.model_copy(update={
        "public_base_url": f"http://127.0.0.1:{port}",
        "google_auth_url": f"{provider}/o/oauth2/v2/auth",
        "google_token_url": f"{provider}/token",
        "google_client_id": apps["google"]["client_id"],
        "google_client_secret": apps["google"]["client_secret"],
        "microsoft_authority_base_url": provider,
        "microsoft_client_id": apps["microsoft"]["client_id"],
        "microsoft_client_secret": apps["microsoft"]["client_secret"],
        "provider_ca_bundle": str(sandbox_server.tls.ca_cert),
    })
    served = ServedApp(create_app(served_settings), port).start()
    wait_for(lambda: httpx.get(f"{served.url}/readyz").status_code == 200, 30, what="ingest ready")
    served.settings = served_settings
    yield served
    served.stop()


class Browser:
    """Follows an authorization URL to the sandbox and the sandbox's answer back to ingest."""

    def __init__(self, sandbox_server):
        context = ssl.create_default_context(cafile=str(sandbox_server.tls.ca_cert))
        self.http = httpx.Client(verify=context, timeout=30, headers={"Connection": "close", "Accept": "application/json"})
        self.last_callback: tuple[str, str, dict] | None = None

    def sign_in(self, authorization_url: str, as_email: str | None = None) -> httpx.Response:
        """The provider's consent, signed in as `as_email` (default: the login_hint ingest asked for)."""
        if as_email:
            parts = urlsplit(authorization_url)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"login_hint": as_email}
            authorization_url = parts._replace(query=urlencode(query)).geturl()
        answer = self.http.get(authorization_url)
        if answer.status_code == 302:
            self.last_callback = ("GET", answer.headers["location"], {})
        else:  # form_post: a page whose form posts the answer back
            assert answer.status_code == 200, answer.text
            action = unescape(re.search(r'action="([^"]+)"', answer.text).group(1))
            fields = {unescape(n): unescape(v) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', answer.text)}
            self.last_callback = ("POST", action, fields)
        return self.replay()

    def replay(self) -> httpx.Response:
        method, url, fields = self.last_callback
        return self.http.request(method, url, data=fields or None)


@pytest.fixture
def browser(sandbox_server):
    b = Browser(sandbox_server)
    yield b
    b.http.close()


def admin(settings) -> dict:
    return {"Authorization": f"Bearer {settings.admin_token}"}


def start_connect(ingest, org: str, user: str, integration: str, **body) -> httpx.Response:
    url = f"{ingest.url}/v1/orgs/{org}/users/{user}/integrations/{integration}/connect"
    return httpx.post(url, json=body, headers=admin(ingest.settings))


def authorization_url(ingest, org, user, integration, **body) -> str:
    r = start_connect(ingest, org, user, integration, **body)
    assert r.status_code == 200, r.text
    return r.json()["authorization_url"]


def redis_call(settings, use_redis):
    """One Redis interaction on a connection of its own (the served ingest runs its own event loop)."""
    async def go():
        redis = connect(settings.redis_url)
        try:
            return await use_redis(redis)
        finally:
            await redis.aclose()
    return asyncio.run(go())


def stored_grant(settings, org, user, integration) -> Grant | None:
    return redis_call(settings, lambda r: TokenStore(r, SecretBox(settings.fernet_key_list)).get(org, user, integration))


def stored_status(settings, org, user, integration):
    return redis_call(settings, lambda r: StatusStore(r).get(org, user, integration))


def google_credentials(sandbox_server, apps, refresh_token: str) -> google.oauth2.credentials.Credentials:
    return google.oauth2.credentials.Credentials(
        None, refresh_token=refresh_token, token_uri=f"{sandbox_server.https_url}/token",
        client_id=apps["google"]["client_id"], client_secret=apps["google"]["client_secret"])


def google_refresh(sandbox_server, credentials) -> None:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override the sandbox CA
    session.verify = str(sandbox_server.tls.ca_cert)
    credentials.refresh(google.auth.transport.requests.Request(session))


def plaintext_anywhere(settings, secret: str) -> list[str]:
    async def scan(redis):
        found = []
        async for name in redis.scan_iter(match="crmsync:*", count=1000, _type="STRING"):
            if secret in name or secret in (await redis.get(name) or ""):
                found.append(name)
        return found
    return redis_call(settings, scan)


def revocations(sandbox_server) -> int:
    """Refresh tokens the sandbox holds as revoked (it runs in this process)."""
    return len(sandbox_server.sandbox.state.revoked_refresh_tokens)


def sync_jobs(kafka_bootstrap, job_key: str) -> list[SyncJob]:
    return [SyncJob.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "sync.jobs") if r.key.decode() == job_key]


# --- Google -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("integration, scopes", [
    ("google_calendar", CALENDAR_SCOPES),
    ("google_drive", {"https://www.googleapis.com/auth/drive.file"}),
    ("mail", {"https://www.googleapis.com/auth/gmail.readonly"}),
])
def test_google_connect_stores_an_encrypted_grant_that_refreshes(
        oauth_ingest, sandbox_server, apps, browser, integration, scopes):
    org, email = unique_org(), new_email("ann")
    account = sandbox_account(sandbox_server, "google", email)
    url = authorization_url(oauth_ingest, org, "ann", integration, expected_email=email)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["access_type"] == "offline" and query["prompt"] == "consent" and query["login_hint"] == email
    assert set(query["scope"].split()) == scopes | {"openid", "https://www.googleapis.com/auth/userinfo.email"}
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == f"{oauth_ingest.url}/v1/oauth/google/callback"

    answer = browser.sign_in(url)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "connected", "provider": "google", "integration": integration, "account": email}

    grant = stored_grant(oauth_ingest.settings, org, "ann", integration)
    assert grant.provider == "google" and grant.account_email == email and scopes <= set(grant.scopes)
    assert stored_status(oauth_ingest.settings, org, "ann", integration).state == "ok"
    assert plaintext_anywhere(oauth_ingest.settings, grant.refresh_token) == [], "refresh token stored in clear"

    credentials = google_credentials(sandbox_server, apps, grant.refresh_token)
    google_refresh(sandbox_server, credentials)
    calendars = httpx.get(f"{sandbox_server.http_url}/calendar/v3/users/me/calendarList",
                          headers={"Authorization": f"Bearer {credentials.token}"})
    assert calendars.status_code == 200, f"the refreshed token is {account['email']}'s: {calendars.text}"


def test_connect_answers_a_page_to_a_browser(oauth_ingest, sandbox_server, browser):
    org, email = unique_org(), new_email("ann")
    sandbox_account(sandbox_server, "google", email)
    browser.http.headers["Accept"] = "text/html,application/xhtml+xml"
    answer = browser.sign_in(authorization_url(oauth_ingest, org, "ann", "google_calendar", expected_email=email))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "Connected" in answer.text and email in answer.text


# --- Microsoft ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("integration, scope", [("microsoft_calendar", "Calendars.ReadWrite"),
                                                ("microsoft_contacts", "Contacts.ReadWrite")])
def test_microsoft_delegated_connect_through_msal(oauth_ingest, sandbox_server, apps, browser, integration, scope):
    org, email = unique_org(), new_email("ann")
    sandbox_account(sandbox_server, "microsoft", email)
    url = authorization_url(oauth_ingest, org, "ann", integration, expected_email=email)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert set(query["scope"].split()) == {scope, "User.Read", "offline_access", "openid", "profile"}
    assert query["response_mode"] == "form_post" and query["login_hint"] == email and query["code_challenge"]

    answer = browser.sign_in(url)
    assert browser.last_callback[0] == "POST", "the code comes back in a form, not in a URL"
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"] == email

    grant = stored_grant(oauth_ingest.settings, org, "ann", integration)
    assert grant.provider == "microsoft" and grant.tenant_id == "sandbox-tenant" and not grant.app_only
    assert plaintext_anywhere(oauth_ingest.settings, grant.refresh_token) == []
    refreshed = msal_app(sandbox_server, apps["microsoft"]).acquire_token_by_refresh_token(grant.refresh_token, [scope])
    assert "access_token" in refreshed, refreshed


def test_microsoft_admin_consent_stores_an_app_only_grant(oauth_ingest, sandbox_server, apps, browser):
    org = unique_org()
    url = authorization_url(oauth_ingest, org, "admin", "microsoft_contacts", expected_email="it@contoso.test",
                            admin_consent=True)
    assert urlsplit(url).path == "/organizations/adminconsent"
    answer = browser.sign_in(url)
    assert answer.status_code == 200, answer.text
    assert "admin_consent=True" in browser.last_callback[1]

    grant = stored_grant(oauth_ingest.settings, org, "admin", "microsoft_contacts")
    assert grant.app_only and grant.refresh_token is None and grant.tenant_id == "sandbox-tenant"
    token = msal_app(sandbox_server, apps["microsoft"]).acquire_token_for_client([GRAPH_SCOPE])
    assert graph(sandbox_server, token["access_token"]).get("/users").status_code == 200


# --- state and address checks ---------------------------------------------------------------------------

def test_forged_replayed_and_cross_provider_state_is_refused(oauth_ingest, sandbox_server, browser):
    org, email = unique_org(), new_email("ann")
    sandbox_account(sandbox_server, "google", email)
    forged = httpx.get(f"{oauth_ingest.url}/v1/oauth/google/callback", params={"code": "x", "state": "forged"})
    assert forged.status_code == 400 and forged.headers["content-type"] == "application/problem+json"
    assert forged.json()["type"].endswith("/invalid-state") and "start connecting again" in forged.json()["detail"]

    url = authorization_url(oauth_ingest, org, "ann", "google_calendar", expected_email=email)
    state = parse_qs(urlsplit(url).query)["state"][0]
    ttl = redis_call(oauth_ingest.settings, lambda r: r.ttl(key("oauth_state", state)))
    assert 0 < ttl <= oauth_ingest.settings.oauth_state_ttl_s, "a connect link expires"
    cross = httpx.post(f"{oauth_ingest.url}/v1/oauth/microsoft/callback", data={"code": "x", "state": state})
    assert cross.status_code == 400, "a Google state is no good at the Microsoft callback"
    assert browser.sign_in(url).status_code == 400, "...and it was used up there"
    assert stored_grant(oauth_ingest.settings, org, "ann", "google_calendar") is None

    assert browser.sign_in(authorization_url(oauth_ingest, org, "ann", "google_calendar",
                                             expected_email=email)).status_code == 200
    replayed = browser.replay()
    assert replayed.status_code == 400 and replayed.json()["type"].endswith("/invalid-state")


@pytest.mark.parametrize("provider, integration", [("google", "google_calendar"), ("microsoft", "microsoft_calendar")])
def test_another_address_is_refused_unless_the_org_allows_it(oauth_ingest, sandbox_server, browser, provider, integration):
    org, ann, bob = unique_org(), new_email("ann"), new_email("bob")
    sandbox_account(sandbox_server, provider, bob)
    revoked_before = revocations(sandbox_server)
    refused = browser.sign_in(authorization_url(oauth_ingest, org, "ann", integration, expected_email=ann), as_email=bob)
    assert refused.status_code == 403, refused.text
    if provider == "google":
        assert revocations(sandbox_server) == revoked_before + 1, "the refused grant is given back to Google"
    problem = refused.json()
    assert problem["type"].endswith("/account-mismatch")
    assert bob in problem["detail"] and ann in problem["detail"] and "Nothing was connected" in problem["detail"]
    assert stored_grant(oauth_ingest.settings, org, "ann", integration) is None
    assert stored_status(oauth_ingest.settings, org, "ann", integration) is None

    allowed = browser.sign_in(authorization_url(oauth_ingest, org, "ann", integration, expected_email=ann,
                                                allow_other_address=True), as_email=bob)
    assert allowed.status_code == 200, allowed.text
    assert stored_grant(oauth_ingest.settings, org, "ann", integration).account_email == bob


def test_a_denied_consent_is_refused_and_uses_the_state(oauth_ingest):
    url = authorization_url(oauth_ingest, unique_org(), "ann", "google_drive", expected_email="ann@contoso.test")
    state = parse_qs(urlsplit(url).query)["state"][0]
    callback = f"{oauth_ingest.url}/v1/oauth/google/callback"
    denied = httpx.get(callback, params={"error": "access_denied", "state": state})
    assert denied.status_code == 400 and "access_denied" in denied.json()["detail"]
    assert httpx.get(callback, params={"code": "late", "state": state}).json()["type"].endswith("/invalid-state")


def test_connect_refuses_what_cannot_connect(oauth_ingest):
    org = unique_org()
    assert start_connect(oauth_ingest, org, "ann", "google_calendar", expected_email="a@b.c").status_code == 200
    no_token = httpx.post(f"{oauth_ingest.url}/v1/orgs/{org}/users/ann/integrations/google_calendar/connect",
                          json={"expected_email": "a@b.c"})
    assert no_token.status_code == 401
    assert start_connect(oauth_ingest, org, "ann", "fax", expected_email="a@b.c").status_code == 422
    assert start_connect(oauth_ingest, org, "ann", "google_calendar", expected_email="nobody").status_code == 422
    google_tenant = start_connect(oauth_ingest, org, "ann", "google_drive", expected_email="a@b.c", admin_consent=True)
    assert google_tenant.status_code == 422 and "Microsoft" in google_tenant.json()["detail"]

    mailbox = {"kind": "pop3", "host": "127.0.0.1", "username": "ann", "password": "pw"}
    put = httpx.put(f"{oauth_ingest.url}/v1/orgs/{org}/users/ann/integrations/mail", json={"mailbox": mailbox},
                    headers=admin(oauth_ingest.settings))
    assert put.status_code == 200, put.text
    pop3 = start_connect(oauth_ingest, org, "ann", "mail", expected_email="a@b.c")
    assert pop3.status_code == 409 and "password" in pop3.json()["detail"]


# --- revoked grants and reconnecting ----------------------------------------------------------------------

def test_revoked_grant_is_auth_failed_until_reconnected_and_sync_resumes(
        oauth_ingest, sandbox_server, apps, browser, kafka_bootstrap):
    settings = oauth_ingest.settings
    org, email = unique_org(), new_email("ann")
    account = sandbox_account(sandbox_server, "google", email)
    job_key = f"{org}:ann:google_calendar"
    labels = {"org": org, "user": "ann", "integration": "google_calendar"}
    assert browser.sign_in(authorization_url(oauth_ingest, org, "ann", "google_calendar",
                                             expected_email=email)).status_code == 200
    assert sync_jobs(kafka_bootstrap, job_key) == [], "a first connect leaves the first sync to the configuration"

    httpx.post(f"{sandbox_server.http_url}/_sandbox/accounts/{account['id']}/revoke").raise_for_status()
    grant = stored_grant(settings, org, "ann", "google_calendar")
    with pytest.raises(RefreshError) as refused:
        google_refresh(sandbox_server, google_credentials(sandbox_server, apps, grant.refresh_token))
    reason = str(refused.value)
    assert "invalid_grant" in reason
    # What a worker does when its adapter raises AuthFailed:
    redis_call(settings, lambda r: mark_auth_failed(r, org, "ann", "google_calendar", reason))

    status = subprocess.run([sys.executable, "-m", "services.cli", "status"], cwd=ROOT, capture_output=True,
                            text=True, env=settings_env(settings) | {"COLUMNS": "250"}, timeout=60, check=False)
    line = next(line for line in status.stdout.splitlines() if org in line)
    assert "auth_failed" in line and "invalid_grant" in line
    assert REGISTRY.get_sample_value("crmsync_integration_auth_failed", labels) == 1

    assert browser.sign_in(authorization_url(oauth_ingest, org, "ann", "google_calendar",
                                             expected_email=email)).status_code == 200
    assert stored_status(settings, org, "ann", "google_calendar").state == "ok"
    assert REGISTRY.get_sample_value("crmsync_integration_auth_failed", labels) == 0
    [job] = wait_for(lambda: sync_jobs(kafka_bootstrap, job_key), 10, what="the reconnect's SyncJob")
    assert job.kind == "full" and job.reason == "reconnected"
    renewed = stored_grant(settings, org, "ann", "google_calendar")
    assert renewed.refresh_token != grant.refresh_token
    google_refresh(sandbox_server, google_credentials(sandbox_server, apps, renewed.refresh_token))


# --- key rotation -------------------------------------------------------------------------------------------

async def test_rotate_all_reencrypts_every_grant_under_the_new_key(redis_url):
    """Rotation with two keys: new first (encrypts), old second (still decrypts), then the old one retired.
    A database of its own: rotate_all takes every grant it finds, and other tests' grants use other keys."""
    old, new = SecretBox.new_key(), SecretBox.new_key()
    redis = connect(urlsplit(redis_url)._replace(path="/11").geturl())
    org = unique_org()
    grants = {user: Grant("google", f"{user}@contoso.test", f"rt-{user}-{uuid.uuid4().hex}") for user in ("ann", "bob")}
    try:
        for user, grant in grants.items():
            await TokenStore(redis, SecretBox([old])).put(org, user, "google_calendar", grant)
        before = {u: await redis.get(key("grant", org, u, "google_calendar")) for u in grants}

        assert await TokenStore(redis, SecretBox([new, old])).rotate_all() == 2

        only_new = TokenStore(redis, SecretBox([new]))
        for user, grant in grants.items():
            assert await only_new.get(org, user, "google_calendar") == grant
            assert await redis.get(key("grant", org, user, "google_calendar")) != before[user]
        with pytest.raises(ValueError):
            await TokenStore(redis, SecretBox([old])).get(org, "ann", "google_calendar")
    finally:
        for user in grants:
            await redis.delete(key("grant", org, user, "google_calendar"))
        await redis.aclose()
