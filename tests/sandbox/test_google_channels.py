"""events.watch and channels.stop in the sandbox: real notifications to a local receiver."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import time
import uuid
from email.utils import parsedate_to_datetime

import httpx
import pytest
from googleapiclient.errors import HttpError

from tests.fixtures.net import wait_for
from tests.sandbox.google_clients import ann, reason_of, receiver, timed  # noqa: F401


def watch(user, address: str, **body) -> dict:
    channel = {"id": str(uuid.uuid4()), "type": "web_hook", "address": address, **body}
    return user.calendar.events().watch(calendarId="primary", body=channel).execute()


def states(receiver, channel_id: str) -> list[tuple[str, int]]:
    return [(n.headers["X-Goog-Resource-State"], int(n.headers["X-Goog-Message-Number"]))
            for n in receiver.for_channel(channel_id)]


def test_watch_sends_sync_then_exists_with_increasing_numbers(sandbox, ann, receiver):
    expiration = int(time.time() * 1000) + 3_600_000
    channel = watch(ann, receiver.url, token="secret-token", expiration=expiration)
    assert channel["kind"] == "api#channel" and channel["resourceId"]
    assert channel["expiration"] == str(expiration)
    assert channel["resourceUri"].endswith("/calendar/v3/calendars/primary/events?alt=json")
    wait_for(lambda: states(receiver, channel["id"]), what="the sync message")

    event = ann.calendar.events().insert(calendarId="primary", body=timed()).execute()
    ann.calendar.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "x"}).execute()
    ann.calendar.events().delete(calendarId="primary", eventId=event["id"]).execute()
    wait_for(lambda: len(states(receiver, channel["id"])) == 4, what="three change messages")

    received = states(receiver, channel["id"])
    assert received[0] == ("sync", 1)
    assert [s for s, _ in received[1:]] == ["exists"] * 3
    numbers = [n for _, n in received]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    headers = receiver.for_channel(channel["id"])[-1].headers
    assert headers["X-Goog-Channel-Token"] == "secret-token"
    assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert parsedate_to_datetime(headers["X-Goog-Channel-Expiration"]).timestamp() == expiration // 1000
    assert receiver.for_channel(channel["id"])[-1].body == b""


def test_stopped_and_expired_channels_get_nothing_more(sandbox, ann, receiver):
    stopped = watch(ann, receiver.url)
    expired = watch(ann, receiver.url, expiration=int(time.time() * 1000) - 1000)
    live = watch(ann, receiver.url)
    wait_for(lambda: all(states(receiver, c["id"]) for c in (stopped, expired, live)), what="sync messages")
    ann.calendar.channels().stop(body={"id": stopped["id"], "resourceId": stopped["resourceId"]}).execute()

    ann.calendar.events().insert(calendarId="primary", body=timed()).execute()
    ann.calendar.events().insert(calendarId="primary", body=timed()).execute()
    wait_for(lambda: len(states(receiver, live["id"])) == 3, what="the live channel's two messages")
    assert states(receiver, stopped["id"]) == [("sync", 1)]
    assert states(receiver, expired["id"]) == [("sync", 1)]
    described = {c["id"]: c["state"] for c in httpx.get(f"{sandbox.http_url}/_sandbox/google/channels").json()}
    assert described == {stopped["id"]: "stopped", expired["id"]: "expired", live["id"]: "live"}


def test_stopping_an_unknown_channel_is_404(sandbox, ann):
    with pytest.raises(HttpError) as raised:
        ann.calendar.channels().stop(body={"id": "nope", "resourceId": "nope"}).execute()
    assert raised.value.status_code == 404


def test_watch_refuses_plain_http_to_other_hosts_and_reused_ids(sandbox, ann, receiver):
    with pytest.raises(HttpError) as raised:
        watch(ann, "http://hooks.example.com/google")
    assert raised.value.status_code == 400 and reason_of(raised.value) == "push.webhookUrlNotHttps"
    channel = watch(ann, receiver.url)
    with pytest.raises(HttpError) as raised:
        watch(ann, receiver.url, id=channel["id"])
    assert raised.value.status_code == 400 and reason_of(raised.value) == "push.channelIdNotUnique"
    with pytest.raises(HttpError) as raised:
        watch(ann, receiver.url, id="x" * 65)
    assert raised.value.status_code == 400


def test_failed_deliveries_are_retried_and_recorded(sandbox, ann, receiver):
    receiver.status = 503
    channel = watch(ann, receiver.url)
    wait_for(lambda: len(receiver.for_channel(channel["id"])) >= 2, what="a retried sync message")
    receiver.status = 200

    def outcomes():
        described = next(c for c in httpx.get(f"{sandbox.http_url}/_sandbox/google/channels").json()
                         if c["id"] == channel["id"])
        return [d["status"] for d in described["deliveries"]]

    wait_for(lambda: outcomes() and outcomes()[-1] == 200, what="the retry that succeeds")
    assert outcomes()[0] == 503
    assert all(n.headers["X-Goog-Message-Number"] == "1" for n in receiver.for_channel(channel["id"]))
