"""Provider webhooks: verified before anything is published, each delivery published once."""
import asyncio
import base64
import json
import time

import httpx
import pytest

from schemas import ProviderNotification
from services.common.state import Channel, ChannelRegistry, GmailMailboxOwner, GmailMailboxRegistry, connect
from tests.fixtures.topics import read_topic
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


def register(redis_url: str, coro_factory) -> None:
    async def run():
        redis = connect(redis_url)
        try:
            await coro_factory(redis)
        finally:
            await redis.aclose()

    asyncio.run(run())


def notifications_for(kafka_bootstrap, org: str) -> list[ProviderNotification]:
    out = [ProviderNotification.from_bytes(r.value) for r in read_topic(kafka_bootstrap, "provider.notifications")]
    return [n for n in out if n.org_id == org]


def refused_count(ingest, provider: str, reason: str) -> float:
    for line in httpx.get(f"{ingest.url}/metrics").text.splitlines():
        if line.startswith("crmsync_webhooks_refused_total{") and f'provider="{provider}"' in line \
                and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- Google channels ----------------------------------------------------------------------------

def google_channel(redis_url, org: str, channel_id: str, token: str = "tok-1") -> None:
    channel = Channel("google_calendar", channel_id, org, "u1", "google_calendar", token, "res-1", time.time() + 3600)
    register(redis_url, lambda r: ChannelRegistry(r).put(channel))


def google_headers(channel_id: str, number: int, state: str = "exists", token: str | None = "tok-1") -> dict:
    headers = {"X-Goog-Channel-ID": channel_id, "X-Goog-Resource-ID": "res-1", "X-Goog-Resource-State": state,
               "X-Goog-Message-Number": str(number), "X-Goog-Resource-URI": "https://x/calendars/primary/events"}
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    return headers


def test_google_sync_message_is_acknowledged_and_changes_published_once_per_message_number(ingest, redis_url, kafka_bootstrap):
    org = unique_org()
    channel_id = f"ch-{org}"
    google_channel(redis_url, org, channel_id)
    url = f"{ingest.url}/v1/webhooks/google/calendar"
    assert httpx.post(url, headers=google_headers(channel_id, 1, "sync")).status_code == 200
    assert httpx.post(url, headers=google_headers(channel_id, 7)).status_code == 200
    assert httpx.post(url, headers=google_headers(channel_id, 7)).status_code == 200, "a redelivery is acknowledged"
    assert httpx.post(url, headers=google_headers(channel_id, 9)).status_code == 200
    published = notifications_for(kafka_bootstrap, org)
    assert [n.message_number for n in published] == [7, 9]
    first = published[0]
    assert (first.provider, first.kind, first.user_id, first.integration) == ("google_calendar", "change", "u1", "google_calendar")
    assert first.key == f"{org}:u1:google_calendar"


def test_google_notification_for_an_unknown_channel_is_refused_and_counted(ingest, kafka_bootstrap):
    before = refused_count(ingest, "google_calendar", "unknown_channel")
    r = httpx.post(f"{ingest.url}/v1/webhooks/google/calendar", headers=google_headers("no-such-channel", 2))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert refused_count(ingest, "google_calendar", "unknown_channel") == before + 1


def test_google_notification_with_a_forged_token_or_resource_is_refused(ingest, redis_url, kafka_bootstrap):
    org = unique_org()
    google_channel(redis_url, org, f"ch-{org}")
    url = f"{ingest.url}/v1/webhooks/google/calendar"
    assert httpx.post(url, headers=google_headers(f"ch-{org}", 2, token="forged")).status_code == 403
    assert httpx.post(url, headers=google_headers(f"ch-{org}", 3, token=None)).status_code == 403
    wrong_resource = google_headers(f"ch-{org}", 4) | {"X-Goog-Resource-ID": "other"}
    assert httpx.post(url, headers=wrong_resource).status_code == 403
    assert notifications_for(kafka_bootstrap, org) == []


def test_google_notification_without_its_headers_is_422_naming_them(ingest):
    r = httpx.post(f"{ingest.url}/v1/webhooks/google/calendar", headers={"X-Goog-Channel-ID": "x"})
    assert r.status_code == 422
    assert "header.X-Goog-Resource-ID" in r.json()["detail"]


# --- Gmail Pub/Sub push -------------------------------------------------------------------------

def gmail_push(address: str, history_id: int, message_id: str) -> dict:
    data = base64.urlsafe_b64encode(json.dumps({"emailAddress": address, "historyId": history_id}).encode()).decode()
    return {"message": {"data": data, "messageId": message_id, "publishTime": "2026-11-23T09:00:00Z"},
            "subscription": "projects/p/subscriptions/s"}


def test_gmail_push_is_published_once_for_the_mailbox_owner(ingest, settings, redis_url, kafka_bootstrap):
    org = unique_org()
    address = f"Ann.{org}@Example.com"
    register(redis_url, lambda r: GmailMailboxRegistry(r).put(address, GmailMailboxOwner(org, "ann")))
    url = f"{ingest.url}/v1/webhooks/gmail?token={settings.gmail_push_token}"
    assert httpx.post(url, json=gmail_push(address.lower(), 1234, f"m-{org}")).status_code == 204
    assert httpx.post(url, json=gmail_push(address.lower(), 1234, f"m-{org}")).status_code == 204
    [notification] = notifications_for(kafka_bootstrap, org)
    assert (notification.provider, notification.history_id, notification.user_id) == ("gmail", 1234, "ann")
    assert notification.integration == "mail"


def test_gmail_push_with_a_wrong_token_bad_data_or_unknown_mailbox_is_refused(ingest, settings, kafka_bootstrap):
    org = unique_org()
    base = f"{ingest.url}/v1/webhooks/gmail"
    assert httpx.post(f"{base}?token=forged", json=gmail_push("a@b.c", 1, "m1")).status_code == 403
    good_token = f"{base}?token={settings.gmail_push_token}"
    bad = {"message": {"data": "!!!", "messageId": "m2"}, "subscription": "s"}
    assert httpx.post(good_token, json=bad).status_code == 400
    assert httpx.post(good_token, json={"message": {}}).status_code == 422
    assert httpx.post(good_token, json=gmail_push(f"nobody-{org}@x.com", 1, "m3")).status_code == 404
    assert notifications_for(kafka_bootstrap, org) == []


# --- Microsoft Graph ----------------------------------------------------------------------------

def graph_subscription(redis_url, org: str, subscription_id: str, client_state: str = "cs-secret") -> None:
    channel = Channel("microsoft_graph", subscription_id, org, "u2", "microsoft_calendar", client_state)
    register(redis_url, lambda r: ChannelRegistry(r).put(channel))


def graph_item(subscription_id: str, client_state: str, event_id: str, **extra) -> dict:
    return {"subscriptionId": subscription_id, "clientState": client_state, "changeType": "updated",
            "resource": f"Users/u2/Events/{event_id}", "tenantId": "t",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": event_id,
                             "@odata.etag": f'W/"ck-{event_id}"'}, **extra}


def test_graph_validation_handshake_echoes_the_token_as_plain_text(ingest):
    token = "Validation: Token/with spaces+and&symbols"
    r = httpx.post(f"{ingest.url}/v1/webhooks/graph", params={"validationToken": token})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == token
    r = httpx.post(f"{ingest.url}/v1/webhooks/graph/lifecycle", params={"validationToken": token})
    assert r.text == token


def test_graph_notification_with_wrong_client_state_among_good_ones_is_refused_alone(ingest, redis_url, kafka_bootstrap):
    org = unique_org()
    graph_subscription(redis_url, org, f"sub-{org}")
    before = refused_count(ingest, "microsoft_graph", "bad_client_state")
    body = {"value": [graph_item(f"sub-{org}", "cs-secret", "e1"),
                      graph_item(f"sub-{org}", "forged", "e2"),
                      graph_item(f"sub-{org}", "cs-secret", "e3")]}
    r = httpx.post(f"{ingest.url}/v1/webhooks/graph", json=body)
    assert r.status_code == 202
    assert refused_count(ingest, "microsoft_graph", "bad_client_state") == before + 1
    published = notifications_for(kafka_bootstrap, org)
    assert sorted(n.resource_id for n in published) == ["Users/u2/Events/e1", "Users/u2/Events/e3"]
    # The item and its version: what lets the worker tell its own write's echo without a pull.
    assert sorted((n.item_id, n.item_etag) for n in published) == [("e1", 'W/"ck-e1"'), ("e3", 'W/"ck-e3"')]

    # Graph redelivers the same notification when it did not get a 2xx in time: published once.
    assert httpx.post(f"{ingest.url}/v1/webhooks/graph", json={"value": [body["value"][0]]}).status_code == 202
    assert len(notifications_for(kafka_bootstrap, org)) == 2


def test_graph_notifications_all_forged_are_403_and_lifecycle_events_are_published(ingest, redis_url, kafka_bootstrap):
    org = unique_org()
    graph_subscription(redis_url, org, f"sub-{org}")
    forged = {"value": [graph_item(f"sub-{org}", "nope", "e1"), graph_item("unknown-sub", "cs-secret", "e2")]}
    assert httpx.post(f"{ingest.url}/v1/webhooks/graph", json=forged).status_code == 403
    lifecycle = {"value": [{"subscriptionId": f"sub-{org}", "clientState": "cs-secret",
                            "lifecycleEvent": "reauthorizationRequired", "tenantId": "t"}]}
    assert httpx.post(f"{ingest.url}/v1/webhooks/graph/lifecycle", json=lifecycle).status_code == 202
    [n] = notifications_for(kafka_bootstrap, org)
    assert (n.kind, n.lifecycle_event, n.integration) == ("lifecycle", "reauthorizationRequired", "microsoft_calendar")
    assert httpx.post(f"{ingest.url}/v1/webhooks/graph", content=b"nope").status_code == 400
    assert httpx.post(f"{ingest.url}/v1/webhooks/graph", json={"value": []}).status_code == 422
