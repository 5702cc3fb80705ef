"""JSON $batch: 20 parts at most, each through the whole app (faults, counters), dependsOn and 424."""
import httpx

from tests.sandbox.microsoft_support import calls, event_body, graph, new_user

JSON = {"Content-Type": "application/json"}


def _create(request_id: str, subject: str, **extra) -> dict:
    return {"id": request_id, "method": "POST", "url": "/me/events", "headers": JSON, "body": event_body(subject), **extra}


def test_batch_of_twenty_creates_twenty_events_each_counted(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    answer = api.post("/$batch", json={"requests": [_create(str(i), f"Batch {i}") for i in range(20)]})
    assert answer.status_code == 200, answer.text
    responses = answer.json()["responses"]
    assert sorted(int(r["id"]) for r in responses) == list(range(20))
    assert {r["status"] for r in responses} == {201}
    assert len({r["body"]["id"] for r in responses}) == 20
    assert len(api.get("/me/events", params={"$top": 50}).json()["value"]) == 20
    assert calls(sandbox, "POST /v1.0/me/events") == 20
    assert calls(sandbox, "POST /v1.0/$batch") == 1


def test_more_than_twenty_requests_or_repeated_ids_are_refused(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    too_many = api.post("/$batch", json={"requests": [_create(str(i), "x") for i in range(21)]})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "BadRequest"
    repeated = api.post("/$batch", json={"requests": [_create("a", "x"), _create("A", "y")]})
    assert repeated.status_code == 400
    no_type = api.post("/$batch", json={"requests": [{"id": "1", "method": "POST", "url": "/me/events", "body": event_body()}]})
    assert no_type.status_code == 400
    assert api.get("/me/events").json()["value"] == []


def test_inner_429_keeps_the_outer_answer_200(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    rule = {"route": "/v1.0/me/events", "method": "POST", "rate_429": 1.0, "retry_after_s": 4}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    answer = api.post("/$batch", json={"requests": [_create("1", "throttled"), {"id": "2", "method": "GET", "url": "/me"}]})
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id["1"]["status"] == 429 and by_id["1"]["headers"]["Retry-After"] == "4"
    assert by_id["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["2"]["status"] == 200 and by_id["2"]["body"]["userPrincipalName"] == "ann@contoso.test"


def test_failed_dependency_answers_424_and_success_lets_dependents_run(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    requests = [
        {"id": "missing", "method": "GET", "url": "/me/events/AAMkNOPE"},
        _create("after-missing", "never", dependsOn=["missing"]),
        _create("first", "first"),
        _create("second", "second", dependsOn=["first"]),
    ]
    by_id = {r["id"]: r for r in api.post("/$batch", json={"requests": requests}).json()["responses"]}
    assert by_id["missing"]["status"] == 404
    assert by_id["after-missing"]["status"] == 424
    assert by_id["first"]["status"] == by_id["second"]["status"] == 201
    assert sorted(e["subject"] for e in api.get("/me/events").json()["value"]) == ["first", "second"]
    loop = [_create("a", "a", dependsOn=["b"]), _create("b", "b", dependsOn=["a"])]
    assert api.post("/$batch", json={"requests": loop}).status_code == 400


def test_inner_requests_carry_the_batch_token_and_are_checked_like_any_call(sandbox):
    ann, bob = new_user(sandbox, "ann@contoso.test"), new_user(sandbox, "bob@contoso.test")
    api = graph(sandbox, ann["access_token"])
    requests = [
        {"id": "own", "method": "GET", "url": f"users/{ann['id']}/events"},
        {"id": "other", "method": "GET", "url": f"/users/{bob['id']}/events"},
    ]
    by_id = {r["id"]: r for r in api.post("/$batch", json={"requests": requests}).json()["responses"]}
    assert by_id["own"]["status"] == 200
    assert by_id["other"]["status"] == 403
    assert graph(sandbox, "at-forged").post("/$batch", json={"requests": requests}).json()["responses"][0]["status"] == 401


def test_a_faulted_request_answers_503_alone_and_each_request_is_counted_once(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    rule = {"route": "/v1.0/me", "method": "GET", "rate_5xx": 1.0, "retry_after_s": 2}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    answer = api.post("/$batch", json={"requests": [_create("1", "kept"), {"id": "2", "method": "GET", "url": "/me"}]})
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id["1"]["status"] == 201 and by_id["1"]["body"]["subject"] == "kept"
    assert by_id["2"]["status"] == 503 and by_id["2"]["body"]["error"]["code"] == "serviceNotAvailable"
    assert calls(sandbox, "POST /v1.0/me/events") == 1 and calls(sandbox, "GET /v1.0/me") == 1
