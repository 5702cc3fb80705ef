"""The sandbox control API: accounts with credentials, faults that are repeatable, counted calls."""
import httpx


def test_account_comes_with_usable_credentials(sandbox):
    r = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={"provider": "google", "email": "Ann@Example.com"})
    assert r.status_code == 201
    body = r.json()
    assert body["email"] == "Ann@Example.com"
    assert body["refresh_token"].startswith("rt-") and body["access_token"].startswith("at-")
    again = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={"provider": "google", "email": "ann@example.com"})
    assert again.json()["id"] == body["id"], "one account per address, case-insensitive"


def test_fault_rule_answers_429_with_retry_after_and_counts_calls(sandbox):
    rule = {"route": "/calendar/v3/*", "rate_429": 1.0, "retry_after_s": 7}
    assert httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).status_code == 201
    r = httpx.get(f"{sandbox.http_url}/calendar/v3/users/me/calendarList")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert r.json()["error"]["errors"][0]["domain"] == "usageLimits"
    counters = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()
    assert sum(counters["injected"].values()) == 1


def test_faults_are_deterministic_by_seed(sandbox):
    def run() -> list[int]:
        httpx.post(f"{sandbox.http_url}/_sandbox/reset")
        httpx.post(f"{sandbox.http_url}/_sandbox/faults", json={"route": "/v1.0/*", "rate_5xx": 0.5, "seed": 42})
        return [httpx.get(f"{sandbox.http_url}/v1.0/users").status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 503 in first and any(code != 503 for code in first)


def test_identity_endpoint_is_served_over_tls_trusted_by_the_test_ca_only(sandbox):
    r = httpx.get(f"{sandbox.https_url}/_sandbox/counters", verify=str(sandbox.tls.ca_cert))
    assert r.status_code == 200
    try:
        httpx.get(f"{sandbox.https_url}/_sandbox/counters")
    except httpx.ConnectError as exc:
        assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
    else:
        raise AssertionError("the sandbox certificate must not be trusted by the system store")
