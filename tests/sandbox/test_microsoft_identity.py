"""The Microsoft identity endpoints, driven by the real MSAL over TLS trusting only the sandbox CA."""
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import requests

from tests.sandbox.microsoft_support import GRAPH_SCOPE, calls, graph, msal_app, new_user


def test_client_credentials_token_is_issued_over_tls_and_served_from_msal_cache(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    app = msal_app(sandbox, user)

    first = app.acquire_token_for_client([GRAPH_SCOPE])
    assert first.get("token_type") == "Bearer", first
    assert calls(sandbox, "/oauth2/v2.0/token") == 1
    second = app.acquire_token_for_client([GRAPH_SCOPE])
    assert second["access_token"] == first["access_token"]
    assert second.get("token_source") == "cache"
    assert calls(sandbox, "/oauth2/v2.0/token") == 1, "the second token must come from MSAL's cache"

    users = graph(sandbox, first["access_token"]).get("/users")
    assert users.status_code == 200 and users.json()["value"][0]["userPrincipalName"] == "ann@contoso.test"


def test_msal_refuses_the_sandbox_with_the_system_ca_store(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    with pytest.raises(requests.exceptions.SSLError):
        msal_app(sandbox, user, verify=True).acquire_token_for_client([GRAPH_SCOPE])


def test_wrong_client_secret_is_invalid_client_401(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    result = msal_app(sandbox, dict(user, client_secret="wrong")).acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    raw = httpx.post(
        f"{sandbox.https_url}/{user['tenant_id']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": user["client_id"], "client_secret": "x", "scope": GRAPH_SCOPE},
        verify=str(sandbox.tls.ca_cert),
    )
    assert raw.status_code == 401 and raw.json()["error_codes"] == [7000215]


def test_client_credentials_need_a_default_scope_and_a_tenant(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    form = {"grant_type": "client_credentials", "client_id": user["client_id"], "client_secret": user["client_secret"]}
    token_url = f"{sandbox.https_url}/{{tenant}}/oauth2/v2.0/token"
    verify = str(sandbox.tls.ca_cert)
    narrow = httpx.post(token_url.format(tenant=user["tenant_id"]), data=dict(form, scope="Calendars.Read"), verify=verify)
    assert narrow.status_code == 400 and narrow.json()["error"] == "invalid_scope"
    common = httpx.post(token_url.format(tenant="common"), data=dict(form, scope=GRAPH_SCOPE), verify=verify)
    assert common.status_code == 400 and common.json()["error_codes"] == [50059]


def test_refresh_token_works_until_the_account_is_revoked(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    app = msal_app(sandbox, user)
    refreshed = app.acquire_token_by_refresh_token(user["refresh_token"], scopes=[GRAPH_SCOPE])
    assert "access_token" in refreshed, refreshed
    assert refreshed["id_token_claims"]["preferred_username"] == "ann@contoso.test"
    assert graph(sandbox, refreshed["access_token"]).get("/me").json()["id"] == user["id"]

    httpx.post(f"{sandbox.http_url}/_sandbox/accounts/{user['id']}/revoke").raise_for_status()
    after = app.acquire_token_by_refresh_token(user["refresh_token"], scopes=[GRAPH_SCOPE])
    assert after["error"] == "invalid_grant"
    assert after["error_description"].startswith("AADSTS50173")
    assert graph(sandbox, refreshed["access_token"]).get("/me").status_code == 401


def _follow_authorize(sandbox, flow: dict) -> dict:
    answer = requests.get(flow["auth_uri"], allow_redirects=False, verify=str(sandbox.tls.ca_cert))
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def test_auth_code_flow_returns_tokens_for_the_hinted_user_with_state_and_nonce(sandbox):
    owner = new_user(sandbox, "admin@contoso.test")
    bob = new_user(sandbox, "bob@contoso.test")
    app = msal_app(sandbox, owner)
    flow = app.initiate_auth_code_flow([GRAPH_SCOPE], redirect_uri="http://localhost:8765/callback", login_hint=bob["email"])

    reply = _follow_authorize(sandbox, flow)
    assert reply["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, reply)

    assert "access_token" in result, result
    claims = result["id_token_claims"]
    assert (claims["oid"], claims["tid"], claims["aud"]) == (bob["id"], bob["tenant_id"], owner["client_id"])
    assert claims["iss"] == f"{sandbox.https_url}/{bob['tenant_id']}/v2.0"
    assert graph(sandbox, result["access_token"]).get("/me").json()["userPrincipalName"] == "bob@contoso.test"
    assert app.get_accounts()[0]["username"] == "bob@contoso.test"
    silent = app.acquire_token_silent([GRAPH_SCOPE], account=app.get_accounts()[0])
    assert silent["access_token"] == result["access_token"]


def test_id_token_is_signed_by_the_published_key(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    result = msal_app(sandbox, user).acquire_token_by_refresh_token(user["refresh_token"], scopes=[GRAPH_SCOPE])
    keys = httpx.get(f"{sandbox.https_url}/{user['tenant_id']}/discovery/v2.0/keys", verify=str(sandbox.tls.ca_cert)).json()
    key = jwt.PyJWK(keys["keys"][0])
    claims = jwt.decode(result["id_token"], key.key, algorithms=["RS256"], audience=user["client_id"])
    assert claims["oid"] == user["id"]


def test_auth_code_flow_refuses_a_forged_state_and_a_replayed_code(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    app = msal_app(sandbox, user)
    flow = app.initiate_auth_code_flow([GRAPH_SCOPE], redirect_uri="http://localhost:8765/callback")
    reply = _follow_authorize(sandbox, flow)
    with pytest.raises(ValueError, match="state"):
        app.acquire_token_by_auth_code_flow(flow, dict(reply, state="forged"))
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, reply)
    again = app.acquire_token_by_auth_code_flow(flow, reply)
    assert again["error"] == "invalid_grant" and "AADSTS54005" in again["error_description"]


def test_pkce_verifier_must_match_the_challenge(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    app = msal_app(sandbox, user)
    flow = app.initiate_auth_code_flow([GRAPH_SCOPE], redirect_uri="http://localhost:8765/callback")
    reply = _follow_authorize(sandbox, flow)
    result = app.acquire_token_by_auth_code_flow(dict(flow, code_verifier="not-the-verifier"), reply)
    assert result["error"] == "invalid_grant" and "AADSTS501481" in result["error_description"]


def test_form_post_answer_and_admin_consent_redirect(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    app = msal_app(sandbox, user)
    flow = app.initiate_auth_code_flow([GRAPH_SCOPE], redirect_uri="https://app.test/cb", response_mode="form_post")
    page = requests.get(flow["auth_uri"], verify=str(sandbox.tls.ca_cert))
    assert page.status_code == 200 and 'action="https://app.test/cb"' in page.text and 'name="code"' in page.text

    consent = requests.get(
        f"{sandbox.https_url}/common/adminconsent",
        params={"client_id": user["client_id"], "redirect_uri": "https://app.test/consented", "state": "s1"},
        allow_redirects=False,
        verify=str(sandbox.tls.ca_cert),
    )
    assert consent.status_code == 302
    query = parse_qs(urlsplit(consent.headers["Location"]).query)
    assert query == {"admin_consent": ["True"], "tenant": [user["tenant_id"]], "state": ["s1"]}


def test_unknown_tenant_fails_discovery(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(sandbox, dict(user, tenant_id="no-such-tenant")).acquire_token_for_client([GRAPH_SCOPE])
    discovery = httpx.get(
        f"{sandbox.https_url}/no-such-tenant/v2.0/.well-known/openid-configuration", verify=str(sandbox.tls.ca_cert)
    )
    assert discovery.status_code == 400 and discovery.json()["error_codes"] == [90002]
