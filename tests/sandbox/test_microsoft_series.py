"""Graph recurring series in the sandbox: occurrences in calendarView and /instances, an occurrence made an
exception by PATCH and cancelled by DELETE, what calendarView/delta reports for it, change notifications."""
import datetime as dt

import httpx
import pytest

from tests.fixtures.net import wait_for
from tests.sandbox.microsoft_support import Receiver, event_body, graph, new_user

WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
DAILY = {"pattern": {"type": "daily", "interval": 1},
         "range": {"type": "numbered", "startDate": "2026-03-02", "numberOfOccurrences": 4}}


@pytest.fixture
def api(sandbox) -> httpx.Client:
    return graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])


def view(api, path: str = "/me/calendarView", **params) -> list[dict]:
    answer = api.get(path, params={**WINDOW, "$top": "100", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["value"]


def delta_round(api, url: str, params: dict | None = None, page_size: int | None = None):
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    pages, answer = [], api.get(url, params=params, headers=headers)
    while True:
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["value"])
        if "@odata.deltaLink" in answer.json():
            return pages, answer.json()["@odata.deltaLink"]
        answer = api.get(answer.json()["@odata.nextLink"], headers=headers)


def stand_up(api) -> dict:
    return api.post("/me/events", json=event_body("Stand-up", "2026-03-02T09:00:00", "2026-03-02T09:15:00",
                                                  recurrence=DAILY)).json()


def test_series_expands_in_calendar_view_and_instances_not_the_master(api):
    series = stand_up(api)
    listed = view(api)
    assert [(e["type"], e["start"]["dateTime"][:16]) for e in listed] == [
        ("occurrence", f"2026-03-0{d}T09:00") for d in range(2, 6)]
    assert all(e["seriesMasterId"] == series["id"] and e["subject"] == "Stand-up" for e in listed)
    assert listed[0]["originalStart"] == "2026-03-02T09:00:00Z"
    instances = view(api, f"/me/events/{series['id']}/instances")
    assert [e["id"] for e in instances] == [e["id"] for e in listed]
    narrow = api.get(f"/me/events/{series['id']}/instances",
                     params={"startDateTime": "2026-03-03T00:00:00Z", "endDateTime": "2026-03-04T00:00:00Z"})
    assert [e["start"]["dateTime"][:10] for e in narrow.json()["value"]] == ["2026-03-03"]

    one = api.get(f"/me/events/{listed[1]['id']}").json()
    assert one["type"] == "occurrence" and one["seriesMasterId"] == series["id"] and one["recurrence"] is None
    missing_window = api.get(f"/me/events/{series['id']}/instances")
    assert missing_window.status_code == 400 and missing_window.json()["error"]["code"] == "ErrorInvalidParameter"
    single = api.post("/me/events", json=event_body("Once")).json()
    assert api.get(f"/me/events/{single['id']}/instances", params=WINDOW).status_code == 400
    assert api.get(f"/me/events/{series['id']}_20260310T090000").status_code == 404, "not a date of the series"


def test_patching_an_occurrence_makes_it_an_exception_with_the_same_id(api):
    series = stand_up(api)
    second = view(api)[1]
    patched = api.patch(f"/me/events/{second['id']}", json={
        "subject": "Stand-up (moved)",
        "start": {"dateTime": "2026-03-03T11:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-03T11:30:00", "timeZone": "UTC"}})
    assert patched.status_code == 200, patched.text
    exception = patched.json()
    assert exception["id"] == second["id"] and exception["type"] == "exception"
    assert exception["seriesMasterId"] == series["id"] and exception["originalStart"] == "2026-03-03T09:00:00Z"
    listed = view(api)
    assert [(e["type"], e["subject"], e["start"]["dateTime"][:16]) for e in listed] == [
        ("occurrence", "Stand-up", "2026-03-02T09:00"), ("exception", "Stand-up (moved)", "2026-03-03T11:00"),
        ("occurrence", "Stand-up", "2026-03-04T09:00"), ("occurrence", "Stand-up", "2026-03-05T09:00")]
    assert view(api, f"/me/events/{series['id']}/instances")[1]["type"] == "exception"
    master = api.get(f"/me/events/{series['id']}").json()
    assert master["type"] == "seriesMaster" and master["subject"] == "Stand-up"
    assert master["changeKey"] != series["changeKey"], "the master is the item that changed"
    stale = api.patch(f"/me/events/{second['id']}", json={"subject": "Lost"}, headers={"If-Match": second["@odata.etag"]})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    again = api.patch(f"/me/events/{second['id']}", json={"subject": "Stand-up (twice)"},
                      headers={"If-Match": exception["@odata.etag"]}).json()
    assert again["start"]["dateTime"].startswith("2026-03-03T11:00") and again["type"] == "exception"
    refused = api.patch(f"/me/events/{second['id']}", json={"recurrence": DAILY})
    assert refused.status_code == 400


def test_an_occurrence_cannot_be_moved_to_or_past_the_day_of_a_neighbour(api):
    """Graph's ErrorOccurrenceCrossingBoundary (event-update): an exception stays between its neighbours'
    days, which is what lets /instances over a window account for every date inside it."""
    series = stand_up(api)
    third = view(api)[2]  # 4 March; its neighbours are 3 and 5 March

    def move(day: str, hour: str = "09") -> httpx.Response:
        return api.patch(f"/me/events/{third['id']}", json={
            "start": {"dateTime": f"2026-03-{day}T{hour}:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"2026-03-{day}T{hour}:15:00", "timeZone": "UTC"}})

    for day in ("03", "05", "10", "01"):
        refused = move(day)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"
    assert [e["type"] for e in view(api, f"/me/events/{series['id']}/instances")] == ["occurrence"] * 4
    assert move("04", "18").status_code == 200, "later the same day is fine"
    first = view(api)[0]  # 2 March, the first: no day before it is taken
    early = api.patch(f"/me/events/{first['id']}", json={
        "start": {"dateTime": "2026-02-20T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-02-20T09:15:00", "timeZone": "UTC"}})
    assert early.status_code == 200, early.text


def test_deleting_an_occurrence_cancels_it_and_delta_resends_the_series_without_it(api):
    series = stand_up(api)
    pages, delta_link = delta_round(api, "/me/calendarView/delta", WINDOW)
    first = [e for p in pages for e in p]
    assert [e["type"] for e in first] == ["seriesMaster", "occurrence", "occurrence", "occurrence", "occurrence"]
    bare = first[1]
    assert set(bare) == {"@odata.type", "@odata.etag", "id", "seriesMasterId", "type", "start", "end"}

    third = first[3]["id"]
    assert api.delete(f"/me/events/{third}").status_code == 204
    assert third not in [e["id"] for e in view(api)]
    assert third not in [e["id"] for e in view(api, f"/me/events/{series['id']}/instances")]
    assert api.get(f"/me/events/{third}").status_code == 404
    assert api.delete(f"/me/events/{third}").status_code == 404

    pages, next_link = delta_round(api, delta_link)
    resent = [e for p in pages for e in p]
    assert [e["id"] for e in resent] == [series["id"]] + [e["id"] for e in first[1:] if e["id"] != third]
    assert not any("@removed" in e for e in resent), "Graph gives no indication for a deleted occurrence"
    assert delta_round(api, next_link)[0] == [[]]


def test_a_series_is_never_split_over_delta_pages(api):
    stand_up(api)
    api.post("/me/events", json=event_body("Single", "2026-03-20T10:00:00", "2026-03-20T11:00:00"))
    pages, _ = delta_round(api, "/me/calendarView/delta", WINDOW, page_size=2)
    assert [len(p) for p in pages] == [5, 1]


def test_single_events_read_as_before(api):
    single = api.post("/me/events", json=event_body("Once")).json()
    assert single["type"] == "singleInstance" and single["seriesMasterId"] is None and "originalStart" not in single
    assert [e["id"] for e in view(api)] == [single["id"]]
    read = api.get(f"/me/events/{single['id']}").json()
    assert {k: v for k, v in read.items() if k != "@odata.context"} == {
        k: v for k, v in single.items() if k != "@odata.context"}


def test_occurrence_changes_notify_the_master_as_updated(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    receiver = Receiver()
    try:
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        created = api.post("/subscriptions", json={
            "changeType": "created,updated,deleted", "notificationUrl": receiver.url("/notify"),
            "resource": "me/events", "expirationDateTime": expires, "clientState": "s"})
        assert created.status_code == 201, created.text
        series = stand_up(api)
        first, second = view(api)[:2]
        api.patch(f"/me/events/{first['id']}", json={"subject": "Moved"})
        api.delete(f"/me/events/{second['id']}")
        notes = wait_for(lambda: len(receiver.notifications()) >= 3 and receiver.notifications(), what="3 notifications")
        # Deliveries run in parallel, so their order is not the writes' order.
        assert sorted((n["changeType"], n["resourceData"]["id"]) for n in notes) == [
            ("created", series["id"]), ("updated", series["id"]), ("updated", series["id"])]
    finally:
        receiver.close()
