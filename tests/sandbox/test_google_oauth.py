"""Google OAuth in the sandbox: the web-server code flow, refresh through google-auth, revocation."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
from urllib.parse import parse_qs, urlsplit

import google.auth.transport.requests
import httpx
import pytest
from google.auth.exceptions import RefreshError
from google_auth_oauthlib.flow import Flow

from tests.sandbox.google_clients import ann, calendar_client, credentials_for  # noqa: F401

REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
SCOPE = "https://www.googleapis.com/auth/calendar"


def authorize(sandbox, account: dict, **overrides) -> httpx.Response:
    params = {
        "client_id": account["client_id"], "redirect_uri": REDIRECT_URI, "response_type": "code",
        "scope": SCOPE, "access_type": "offline", "state": "xyz-123", "login_hint": account["email"],
        **overrides,
    }
    return httpx.get(f"{sandbox.http_url}/o/oauth2/v2/auth", params={k: v for k, v in params.items() if v is not None})


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def exchange(sandbox, account: dict, code: str, redirect_uri: str = REDIRECT_URI) -> httpx.Response:
    return httpx.post(f"{sandbox.http_url}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": account["client_id"], "client_secret": account["client_secret"],
    })


def test_code_flow_gives_tokens_that_google_auth_refreshes_and_the_api_accepts(sandbox, ann):
    params = redirect_params(authorize(sandbox, ann.account))
    assert params["state"] == "xyz-123" and params["code"]
    tokens = exchange(sandbox, ann.account, params["code"])
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["scope"] == SCOPE

    credentials = credentials_for(sandbox, ann.account, refresh_token=body["refresh_token"])
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.valid and credentials.token != body["access_token"]
    calendars = calendar_client(sandbox, credentials).calendarList().list().execute()
    assert [c["id"] for c in calendars["items"]] == ["ann@example.com"]


def test_online_access_gives_no_refresh_token(sandbox, ann):
    code = redirect_params(authorize(sandbox, ann.account, access_type=None))["code"]
    body = exchange(sandbox, ann.account, code).json()
    assert "access_token" in body and "refresh_token" not in body


def test_code_is_single_use_and_bound_to_its_redirect_uri(sandbox, ann):
    code = redirect_params(authorize(sandbox, ann.account))["code"]
    wrong = exchange(sandbox, ann.account, code, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert wrong.status_code == 400 and wrong.json()["error"] == "redirect_uri_mismatch"
    code = redirect_params(authorize(sandbox, ann.account))["code"]
    assert exchange(sandbox, ann.account, code).status_code == 200
    again = exchange(sandbox, ann.account, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_unknown_client_is_refused_without_a_redirect(sandbox, ann):
    response = authorize(sandbox, ann.account, client_id="nobody.apps.googleusercontent.com")
    assert response.status_code == 401 and "location" not in response.headers
    assert response.json()["error"] == "invalid_client"


def test_unknown_account_is_sent_back_with_access_denied_and_the_state(sandbox, ann):
    params = redirect_params(authorize(sandbox, ann.account, login_hint="stranger@example.com"))
    assert params == {"error": "access_denied", "state": "xyz-123"}


def test_wrong_client_secret_is_invalid_client(sandbox, ann):
    response = httpx.post(f"{sandbox.http_url}/token", data={
        "grant_type": "refresh_token", "refresh_token": ann.account["refresh_token"],
        "client_id": ann.account["client_id"], "client_secret": "not-the-secret",
    })
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_revoked_account_refresh_fails_with_invalid_grant(sandbox, ann):
    ann.credentials.refresh(google.auth.transport.requests.Request())
    assert httpx.post(f"{sandbox.http_url}/_sandbox/accounts/{ann.id}/revoke").status_code == 200
    with pytest.raises(RefreshError) as raised:
        credentials_for(sandbox, ann.account).refresh(google.auth.transport.requests.Request())
    assert "invalid_grant" in str(raised.value)
    # The access token issued before the revocation stops working too.
    api = httpx.get(f"{sandbox.http_url}/calendar/v3/users/me/calendarList",
                    headers={"Authorization": f"Bearer {ann.credentials.token}"})
    assert api.status_code == 401


def test_revoke_endpoint_ends_the_grant(sandbox, ann):
    response = httpx.post(f"{sandbox.http_url}/revoke", data={"token": ann.account["refresh_token"]})
    assert response.status_code == 200
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials_for(sandbox, ann.account).refresh(google.auth.transport.requests.Request())
    assert httpx.post(f"{sandbox.http_url}/revoke", data={"token": "rt-unknown"}).json()["error"] == "invalid_token"


def test_google_auth_oauthlib_flow_with_pkce_over_https(sandbox, ann):
    """The flow the ingest service runs: google-auth-oauthlib's Flow (PKCE S256) against the https port."""
    client = {"web": {"client_id": ann.account["client_id"], "client_secret": ann.account["client_secret"],
                      "auth_uri": f"{sandbox.https_url}/o/oauth2/v2/auth", "token_uri": f"{sandbox.https_url}/token"}}
    flow = Flow.from_client_config(client, scopes=[SCOPE], redirect_uri=REDIRECT_URI)
    url, _ = flow.authorization_url(access_type="offline", prompt="consent", login_hint=ann.account["email"])
    assert "code_challenge_method=S256" in url
    answer = httpx.get(url, verify=str(sandbox.tls.ca_cert))
    code = redirect_params(answer)["code"]
    token = flow.fetch_token(code=code, verify=str(sandbox.tls.ca_cert))
    assert token["refresh_token"] and token["scope"] == [SCOPE]

    # The same code path without the verifier, or with another one, is refused as Google does.
    code = redirect_params(httpx.get(url, verify=str(sandbox.tls.ca_cert)))["code"]
    assert exchange(sandbox, ann.account, code).json() == {
        "error": "invalid_grant", "error_description": "Missing code verifier."}
    code = redirect_params(httpx.get(url, verify=str(sandbox.tls.ca_cert)))["code"]
    wrong = httpx.post(f"{sandbox.http_url}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": "x" * 50,
        "client_id": ann.account["client_id"], "client_secret": ann.account["client_secret"]})
    assert wrong.json()["error_description"] == "Invalid code verifier."
