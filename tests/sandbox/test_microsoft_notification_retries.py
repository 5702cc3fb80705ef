"""Graph change-notification delivery retries in the sandbox: an endpoint that refuses is retried with
backoff until it accepts; one that never does is given up on, counted, and told `missed`."""
import datetime as dt

import httpx
import pytest

from tests.fixtures.net import wait_for
from tests.sandbox.microsoft_support import Receiver, event_body, graph, new_user


def _in(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def counters(sandbox) -> dict:
    calls = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["calls"]
    return {k: v for k, v in calls.items() if k.startswith("graph ")}


def deliveries(sandbox, kind: str) -> list[dict]:
    return [d for d in httpx.get(f"{sandbox.http_url}/_sandbox/microsoft/deliveries").json() if d["kind"] == kind]


def settings(sandbox, **values) -> None:
    httpx.patch(f"{sandbox.http_url}/_sandbox/microsoft/settings", json=values).raise_for_status()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def subscribe(api, receiver: Receiver) -> dict:
    created = api.post("/subscriptions", json={
        "changeType": "created,updated,deleted", "notificationUrl": receiver.url("/notify"),
        "lifecycleNotificationUrl": receiver.url("/lifecycle"), "resource": "me/events",
        "expirationDateTime": _in(60), "clientState": "secret-state"})
    assert created.status_code == 201, created.text
    return created.json()


def test_a_refused_notification_is_retried_with_backoff_until_accepted(sandbox, receiver):
    settings(sandbox, retry_base_delay_s=0.1, retry_window_s=30)
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    subscribe(api, receiver)
    receiver.refuse_first = 2
    event = api.post("/me/events", json=event_body()).json()
    [note] = wait_for(lambda: receiver.notifications(), what="the notification, once accepted")
    assert note["resourceData"]["id"] == event["id"] and note["clientState"] == "secret-state"
    attempts = wait_for(lambda: len(deliveries(sandbox, "change")) == 3 and deliveries(sandbox, "change"))
    assert [(d["attempt"], d["status"], d["outcome"]) for d in attempts] == [
        (1, 503, "retried"), (2, 503, "retried"), (3, 202, "delivered")]
    assert receiver.refused == 2
    assert counters(sandbox) == {"graph change notifications retried": 2, "graph change notifications delivered": 1}
    assert receiver.notifications("/lifecycle") == [], "delivered in the end: nothing was missed"


def test_an_endpoint_that_never_accepts_is_given_up_on_and_told_missed(sandbox, receiver):
    settings(sandbox, retry_base_delay_s=0.05, retry_window_s=0.3)
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    sub = subscribe(api, receiver)
    receiver.refuse_first = 1_000_000
    api.post("/me/events", json=event_body())
    [missed] = wait_for(lambda: receiver.notifications("/lifecycle"), what="the missed lifecycle notification")
    assert missed["lifecycleEvent"] == "missed" and missed["subscriptionId"] == sub["id"]
    attempts = deliveries(sandbox, "change")
    assert attempts[-1]["outcome"] == "dropped" and all(d["outcome"] == "retried" for d in attempts[:-1])
    assert [d["attempt"] for d in attempts] == list(range(1, len(attempts) + 1)) and len(attempts) >= 3
    counted = counters(sandbox)
    assert counted["graph change notifications dropped"] == 1
    assert counted["graph change notifications retried"] == len(attempts) - 1
    assert counted["graph lifecycle notifications delivered"] == 1
    assert receiver.notifications() == []


def test_an_answer_later_than_the_timeout_counts_as_failed_and_is_retried(sandbox, receiver):
    settings(sandbox, retry_base_delay_s=0.05, retry_window_s=30, notification_timeout_s=0.3)
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    subscribe(api, receiver)
    receiver.stall_first_s = 1.0
    api.post("/me/events", json=event_body())
    attempts = wait_for(lambda: len(deliveries(sandbox, "change")) == 2 and deliveries(sandbox, "change"),
                        what="a timed-out attempt and its retry")
    assert [(d["status"], d["outcome"]) for d in attempts] == [(None, "retried"), (202, "delivered")]
    assert "Timeout" in attempts[0]["error"]
    # The stalled endpoint still took the first post in the end: the app sees it twice and must dedupe.
    wait_for(lambda: len(receiver.notifications()) == 2, what="both posts at the endpoint")
    assert len({n["id"] for n in receiver.notifications()}) == 1
