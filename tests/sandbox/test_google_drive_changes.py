"""Drive v3 changes and push channels in the sandbox: what a drive_sync engine pulls after a notification."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import uuid

import httpx
import pytest
from googleapiclient.errors import HttpError

from tests.fixtures.net import wait_for
from tests.sandbox.drive_support import dora, folder  # noqa: F401
from tests.sandbox.google_clients import reason_of, receiver  # noqa: F401


def pull(user, token: str, **options) -> tuple[list[dict], str]:
    """Every change since `token`, following pages; returns them and the next start token."""
    changes = []
    while True:
        page = user.drive.changes().list(pageToken=token, **options).execute()
        changes += page["changes"]
        if "newStartPageToken" in page:
            return changes, page["newStartPageToken"]
        token = page["nextPageToken"]


def test_changes_since_a_start_token_with_trash_and_removal(sandbox, dora):
    start = dora.drive.changes().getStartPageToken().execute()["startPageToken"]
    lead = folder(dora, "Lead")
    doc = dora.drive.files().create(body={"name": "a", "parents": [lead["id"]]}).execute()
    gone = dora.drive.files().create(body={"name": "b"}).execute()
    dora.drive.files().update(fileId=doc["id"], body={"name": "a2"}).execute()
    dora.drive.files().update(fileId=lead["id"], body={"trashed": True}).execute()
    dora.drive.files().delete(fileId=gone["id"]).execute()

    changes, next_start = pull(dora, start, pageSize=2, fields="*")
    by_id = {c["fileId"]: c for c in changes}
    assert len(changes) == 3  # one per file: its latest state
    assert by_id[doc["id"]]["file"]["name"] == "a2" and by_id[doc["id"]]["file"]["trashed"] is True
    assert by_id[lead["id"]]["file"]["explicitlyTrashed"] is True and by_id[lead["id"]]["removed"] is False
    assert by_id[gone["id"]]["removed"] is True and "file" not in by_id[gone["id"]]
    assert by_id[gone["id"]]["kind"] == "drive#change" and by_id[gone["id"]]["changeType"] == "file"

    assert pull(dora, next_start) == ([], next_start)
    kept, _ = pull(dora, start, includeRemoved=False)
    assert gone["id"] not in {c["fileId"] for c in kept}


def test_default_change_fields_and_last_page_token(sandbox, dora):
    start = dora.drive.changes().getStartPageToken().execute()["startPageToken"]
    made = dora.drive.files().create(body={"name": "x"}).execute()
    page = dora.drive.changes().list(pageToken=start).execute()
    assert "newStartPageToken" in page and "nextPageToken" not in page
    assert page["changes"][0]["file"] == {"kind": "drive#file", "id": made["id"], "name": "x",
                                          "mimeType": "application/octet-stream"}


def test_changes_list_needs_a_valid_page_token(sandbox, dora):
    for token in ("999999", "abc"):
        with pytest.raises(HttpError) as raised:
            dora.drive.changes().list(pageToken=token).execute()
        assert raised.value.status_code == 400 and raised.value.error_details[0]["location"] == "pageToken"
    with pytest.raises(HttpError) as raised:
        dora.drive.changes().list(pageToken="1", pageSize=0).execute()
    assert raised.value.status_code == 400


def states(receiver, channel_id: str) -> list[str]:
    return [n.headers["X-Goog-Resource-State"] for n in receiver.for_channel(channel_id)]


def test_changes_watch_posts_sync_then_change_and_stop_ends_it(sandbox, dora, receiver):
    start = dora.drive.changes().getStartPageToken().execute()["startPageToken"]
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url, "token": "org-1:user-1"}
    channel = dora.drive.changes().watch(pageToken=start, body=body).execute()
    assert channel["kind"] == "api#channel" and channel["resourceId"]
    assert "/drive/v3/changes" in channel["resourceUri"]
    wait_for(lambda: states(receiver, channel["id"]) == ["sync"], what="the sync message")

    folder(dora, "Lead")
    wait_for(lambda: states(receiver, channel["id"]) == ["sync", "change"], what="a change message")
    last = receiver.for_channel(channel["id"])[-1].headers
    assert last["X-Goog-Channel-Token"] == "org-1:user-1" and last["X-Goog-Resource-ID"] == channel["resourceId"]
    assert int(last["X-Goog-Message-Number"]) > 1

    witness = dora.drive.changes().watch(pageToken=start, body={**body, "id": str(uuid.uuid4())}).execute()
    wait_for(lambda: states(receiver, witness["id"]) == ["sync"], what="the witness channel's sync")
    dora.drive.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    folder(dora, "After stop")
    wait_for(lambda: states(receiver, witness["id"]) == ["sync", "change"], what="the witness's change message")
    assert states(receiver, channel["id"]) == ["sync", "change"]  # nothing more for the stopped channel
    described = {c["id"]: c["state"] for c in httpx.get(f"{sandbox.http_url}/_sandbox/google/drive/channels").json()}
    assert described == {channel["id"]: "stopped", witness["id"]: "live"}
    with pytest.raises(HttpError) as raised:
        dora.drive.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    assert raised.value.status_code == 404 and reason_of(raised.value) == "notFound"


def test_watch_needs_a_page_token_and_an_https_address(sandbox, dora):
    start = dora.drive.changes().getStartPageToken().execute()["startPageToken"]
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": "http://hooks.example.com/drive"}
    with pytest.raises(HttpError) as raised:
        dora.drive.changes().watch(pageToken=start, body=body).execute()
    assert raised.value.status_code == 400 and reason_of(raised.value) == "push.webhookUrlNotHttps"


def test_drive_calls_are_faulted_through_the_fault_api(sandbox, dora):
    rule = {"method": "GET", "route": "/drive/v3/changes", "rate_5xx": 1.0}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    with pytest.raises(HttpError) as raised:
        dora.drive.changes().list(pageToken="1").execute()
    assert raised.value.status_code == 503
    injected = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["injected"]
    assert injected == {"GET /drive/v3/changes 503": 1}
