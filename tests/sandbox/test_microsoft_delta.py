"""calendarView/delta: paged full round, then only changes (with @removed), and 410 on a lost sync state."""
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.sandbox.microsoft_support import event_body, graph, new_user

WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}


def _round(api: httpx.Client, first_url: str, params: dict | None = None, page_size: int | None = None):
    """Follow nextLinks to the deltaLink; returns (pages of values, deltaLink)."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    answer = api.get(first_url, params=params, headers=headers)
    pages = []
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return pages, body["@odata.deltaLink"], answer
        assert "$skiptoken=" in body["@odata.nextLink"]
        answer = api.get(body["@odata.nextLink"], headers=headers)


def test_full_round_is_paged_by_maxpagesize_and_ends_with_a_delta_link(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    for day in range(2, 7):
        api.post("/me/events", json=event_body(f"Day {day}", f"2026-03-0{day}T10:00:00", f"2026-03-0{day}T11:00:00"))
    api.post("/me/events", json=event_body("Outside", "2026-05-02T10:00:00", "2026-05-02T11:00:00"))

    pages, delta_link, last = _round(api, "/me/calendarView/delta", WINDOW, page_size=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert last.headers["Preference-Applied"] == "odata.maxpagesize=2"
    assert sorted(e["subject"] for p in pages for e in p) == [f"Day {d}" for d in range(2, 7)]
    assert "$deltatoken=" in delta_link and "startDateTime" not in delta_link

    again, _, _ = _round(api, delta_link)
    assert again == [[]], "nothing changed since the deltaLink"


def test_writes_during_a_paged_round_come_in_the_next_round_not_on_its_later_pages(sandbox):
    """A round's pages are of the state it began with (worked out once for all its pages): what is written
    meanwhile is neither on its later pages nor lost, the next round brings it."""
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    made = [api.post("/me/events", json=event_body(f"Day {day}", f"2026-03-0{day}T10:00:00",
                                                   f"2026-03-0{day}T11:00:00")).json() for day in range(2, 7)]
    headers = {"Prefer": "odata.maxpagesize=2"}
    first = api.get("/me/calendarView/delta", params=WINDOW, headers=headers).json()
    api.patch(f"/me/events/{made[4]['id']}", json={"subject": "Renamed"})
    api.post("/me/events", json=event_body("Late", "2026-03-08T10:00:00", "2026-03-08T11:00:00"))
    rest, delta_link, _ = _round(api, first["@odata.nextLink"], page_size=2)
    assert sorted(e["subject"] for p in [first["value"], *rest] for e in p) == [f"Day {d}" for d in range(2, 7)]

    again, _, _ = _round(api, delta_link)
    assert sorted(e["subject"] for p in again for e in p) == ["Late", "Renamed"]


def test_delta_link_returns_only_changes_and_removals(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    kept = api.post("/me/events", json=event_body("Kept")).json()
    edited = api.post("/me/events", json=event_body("Edited")).json()
    deleted = api.post("/me/events", json=event_body("Deleted")).json()
    moved = api.post("/me/events", json=event_body("Moved")).json()
    _, delta_link, _ = _round(api, f"/users/{kept['organizer']['emailAddress']['address']}/calendarView/delta", WINDOW)

    api.patch(f"/me/events/{edited['id']}", json={"subject": "Edited twice"})
    api.delete(f"/me/events/{deleted['id']}")
    api.patch(f"/me/events/{moved['id']}", json={"start": {"dateTime": "2026-06-01T10:00:00", "timeZone": "UTC"},
                                                 "end": {"dateTime": "2026-06-01T11:00:00", "timeZone": "UTC"}})
    added = api.post("/me/events", json=event_body("Added")).json()

    pages, next_delta, _ = _round(api, delta_link)
    changes = {item["id"]: item for page in pages for item in page}
    assert changes.keys() == {edited["id"], deleted["id"], moved["id"], added["id"]}
    assert changes[edited["id"]]["subject"] == "Edited twice"
    assert changes[deleted["id"]] == {"@odata.type": "#microsoft.graph.event", "id": deleted["id"], "@removed": {"reason": "deleted"}}
    assert changes[moved["id"]]["@removed"] == {"reason": "changed"}
    assert changes[added["id"]]["subject"] == "Added"
    assert _round(api, next_delta)[0] == [[]]


def test_deleting_a_series_removes_its_master_and_each_occurrence(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    daily = {"pattern": {"type": "daily", "interval": 1}, "range": {"type": "numbered", "startDate": "2026-03-02", "numberOfOccurrences": 3}}
    series = api.post("/me/events", json=event_body("Daily", recurrence=daily)).json()
    pages, delta_link, _ = _round(api, "/me/calendarView/delta", WINDOW)
    listed = [e for p in pages for e in p]
    assert [e["type"] for e in listed] == ["seriesMaster", "occurrence", "occurrence", "occurrence"]
    assert listed[0]["id"] == series["id"] and all(e["seriesMasterId"] == series["id"] for e in listed[1:])

    api.delete(f"/me/events/{series['id']}")
    removed = [e for p in _round(api, delta_link)[0] for e in p]
    assert sorted(e["id"] for e in removed) == sorted(e["id"] for e in listed)
    assert all(e["@removed"] == {"reason": "deleted"} for e in removed)


def test_refused_query_options_and_missing_window(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    for option in ("$select", "$filter", "$orderby", "$expand"):
        refused = api.get("/me/calendarView/delta", params={**WINDOW, option: "subject"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorInvalidUrlQuery", option
    assert api.get("/me/calendarView/delta").status_code == 400


def test_unknown_or_invalidated_token_answers_410_with_a_fresh_start(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    api.post("/me/events", json=event_body())
    forged = api.get("/me/calendarView/delta", params={"$deltatoken": "not-a-token"})
    assert forged.status_code == 410 and forged.json()["error"]["code"] == "SyncStateNotFound"

    _, delta_link, _ = _round(api, "/me/calendarView/delta", WINDOW)
    invalidate = httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/users/{ann['id']}/invalidate-delta-tokens")
    assert invalidate.status_code == 200
    expired = api.get(delta_link)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "SyncStateNotFound"
    fresh = expired.headers["Location"]
    assert parse_qs(urlsplit(fresh).query).keys() == {"startDateTime", "endDateTime"}
    pages, _, _ = _round(api, fresh)
    assert sum(len(p) for p in pages) == 1, "the fresh round is a full resync"


def test_a_token_of_one_user_is_unknown_for_another(sandbox):
    ann, bob = new_user(sandbox, "ann@contoso.test"), new_user(sandbox, "bob@contoso.test")
    _, delta_link, _ = _round(graph(sandbox, ann["access_token"]), "/me/calendarView/delta", WINDOW)
    token = parse_qs(urlsplit(delta_link).query)["$deltatoken"][0]
    stolen = graph(sandbox, bob["access_token"]).get("/me/calendarView/delta", params={"$deltatoken": token})
    assert stolen.status_code == 410
