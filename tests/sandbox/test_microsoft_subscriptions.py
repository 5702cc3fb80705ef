"""Graph subscriptions: validation handshake, change and lifecycle notifications, renewals, expiry."""
import datetime as dt

import httpx
import pytest

from tests.fixtures.net import wait_for
from tests.sandbox.microsoft_support import Receiver, event_body, graph, new_user


def _in(minutes: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _subscription(receiver: Receiver, resource: str = "me/events", **extra) -> dict:
    return {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url("/notify"),
        "resource": resource,
        "expirationDateTime": _in(60),
        "clientState": "secret-state",
        **extra,
    }


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def _deliveries(sandbox, kind: str) -> list[dict]:
    return [d for d in httpx.get(f"{sandbox.http_url}/_sandbox/microsoft/deliveries").json() if d["kind"] == kind]


def test_notification_reaches_the_endpoint_with_client_state(sandbox, receiver):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    created = api.post("/subscriptions", json=_subscription(receiver))
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["clientState"] == "secret-state" and sub["applicationId"] == ann["client_id"]
    assert len(receiver.validations) == 1 and receiver.validations[0].startswith("Validation: ")

    event = api.post("/me/events", json=event_body()).json()
    note = wait_for(lambda: receiver.notifications(), what="a change notification")[0]
    assert note["subscriptionId"] == sub["id"] and note["clientState"] == "secret-state"
    assert note["changeType"] == "created" and note["tenantId"] == ann["tenant_id"]
    assert note["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.Event",
        "@odata.id": f"Users/{ann['id']}/Events/{event['id']}",
        "@odata.etag": event["@odata.etag"],
        "id": event["id"],
    }
    api.delete(f"/me/events/{event['id']}")
    wait_for(lambda: [n for n in receiver.notifications() if n["changeType"] == "deleted"], what="deletion notice")
    assert wait_for(lambda: len(_deliveries(sandbox, "change")) == 2)
    assert all(d["status"] == 202 for d in _deliveries(sandbox, "change"))


def test_lost_change_notifications_are_recorded_and_never_reach_the_endpoint(sandbox, receiver):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    api.post("/subscriptions", json=_subscription(receiver))
    settings = httpx.patch(f"{sandbox.http_url}/_sandbox/microsoft/settings", json={"lose_changes": 1})
    assert settings.json()["lose_changes"] == 1.0
    api.post("/me/events", json=event_body("Lost"))
    [lost] = _deliveries(sandbox, "change")
    assert lost["error"] == "lost" and lost["status"] is None
    httpx.patch(f"{sandbox.http_url}/_sandbox/microsoft/settings", json={"lose_changes": 0}).raise_for_status()
    api.post("/me/events", json=event_body("Delivered"))
    wait_for(lambda: len(receiver.notifications()) == 1, what="the next notification delivered")
    wait_for(lambda: [d["status"] for d in _deliveries(sandbox, "change")] == [None, 202], what="its record")


def test_only_subscribed_change_types_are_sent(sandbox, receiver):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    api.post("/subscriptions", json=_subscription(receiver, changeType="updated")).raise_for_status()
    event = api.post("/me/events", json=event_body()).json()
    api.patch(f"/me/events/{event['id']}", json={"subject": "changed"})
    wait_for(lambda: receiver.notifications(), what="the update notice")
    assert [n["changeType"] for n in receiver.notifications()] == ["updated"]


@pytest.mark.parametrize(
    ("handshake", "message"),
    [
        ("wrong", "must exactly match validationToken"),
        ("json", "must exactly match validationToken"),
        ("error", "must respond with 200 OK"),
        ("slow", "timed out"),
    ],
)
def test_endpoint_that_fails_the_handshake_is_refused(sandbox, handshake, message):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    httpx.patch(f"{sandbox.http_url}/_sandbox/microsoft/settings", json={"validation_timeout_s": 0.3}).raise_for_status()
    endpoint = Receiver(handshake=handshake, slow_s=1.0)
    try:
        refused = api.post("/subscriptions", json=_subscription(endpoint))
    finally:
        endpoint.close()
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidRequest"
    assert message in refused.json()["error"]["message"]
    assert api.get("/subscriptions").json()["value"] == []


def test_lifecycle_url_is_validated_too_and_gets_lifecycle_events(sandbox, receiver):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    sub = api.post("/subscriptions", json=_subscription(receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))).json()
    assert len(receiver.validations) == 2

    control = f"{sandbox.http_url}/_sandbox/microsoft/subscriptions/{sub['id']}"
    assert httpx.post(f"{control}/lifecycle", json={"event": "reauthorizationRequired"}).status_code == 202
    note = wait_for(lambda: receiver.notifications("/lifecycle"), what="a lifecycle notification")[0]
    assert note == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": note["tenantId"],
        "clientState": "secret-state",
        "lifecycleEvent": "reauthorizationRequired",
    }
    paused = api.post("/me/events", json=event_body("while paused")).json()
    assert api.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    resumed = api.post("/me/events", json=event_body("after reauthorize")).json()
    wait_for(lambda: resumed["id"] in receiver.changed_ids(), what="notifications to resume")
    assert paused["id"] not in receiver.changed_ids(), "nothing is sent while reauthorization is pending"

    httpx.post(f"{control}/lifecycle", json={"event": "subscriptionRemoved"}).raise_for_status()
    wait_for(lambda: len(receiver.notifications("/lifecycle")) == 2, what="subscriptionRemoved")
    assert api.get(f"/subscriptions/{sub['id']}").status_code == 404


def test_expired_subscription_is_silent_and_cannot_be_renewed(sandbox, receiver):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    expired = api.post("/subscriptions", json=_subscription(receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))).json()
    live = api.post("/subscriptions", json=_subscription(receiver)).json()
    assert httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/subscriptions/{expired['id']}/expire").status_code == 200
    removed = wait_for(lambda: receiver.notifications("/lifecycle"), what="removal notice")[0]
    assert removed["lifecycleEvent"] == "subscriptionRemoved"

    api.post("/me/events", json=event_body())
    wait_for(lambda: receiver.notifications(), what="the live subscription's notice")
    assert {n["subscriptionId"] for n in receiver.notifications()} == {live["id"]}
    renew = api.patch(f"/subscriptions/{expired['id']}", json={"expirationDateTime": _in(120)})
    assert renew.status_code == 404
    assert [s["id"] for s in api.get("/subscriptions").json()["value"]] == [live["id"]]


def test_renew_delete_and_expiration_limits(sandbox, receiver):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    maximum = sandbox.sandbox.config.graph_max_subscription_minutes
    too_far = api.post("/subscriptions", json=_subscription(receiver, expirationDateTime=_in(maximum + 5)))
    assert too_far.status_code == 400 and too_far.json()["error"]["code"] == "ExtensionError"
    assert f"{maximum} minutes" in too_far.json()["error"]["message"]
    past = api.post("/subscriptions", json=_subscription(receiver, expirationDateTime=_in(-1)))
    assert past.status_code == 400
    long_state = api.post("/subscriptions", json=_subscription(receiver, clientState="x" * 129))
    assert long_state.status_code == 400
    public_http = api.post("/subscriptions", json=_subscription(receiver, notificationUrl="http://example.com/hook"))
    assert public_http.status_code == 400
    assert receiver.validations == [], "refused requests are refused before the handshake"

    sub = api.post("/subscriptions", json=_subscription(receiver)).json()
    later = _in(maximum - 1)
    renewed = api.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"][:19] == later[:19]
    assert api.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": _in(maximum + 5)}).status_code == 400
    assert api.delete(f"/subscriptions/{sub['id']}").status_code == 204
    assert api.get(f"/subscriptions/{sub['id']}").status_code == 404


def test_other_users_mailbox_and_subscriptions_are_out_of_reach(sandbox, receiver):
    ann, bob = new_user(sandbox, "ann@contoso.test"), new_user(sandbox, "bob@contoso.test")
    ann_api, bob_api = graph(sandbox, ann["access_token"]), graph(sandbox, bob["access_token"])
    denied = ann_api.post("/subscriptions", json=_subscription(receiver, resource=f"users/{bob['id']}/events"))
    assert denied.status_code == 403
    sub = ann_api.post("/subscriptions", json=_subscription(receiver, resource=f"users/{ann['id']}/events")).json()
    assert bob_api.get(f"/subscriptions/{sub['id']}").status_code == 404
    assert bob_api.delete(f"/subscriptions/{sub['id']}").status_code == 404
