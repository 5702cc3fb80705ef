"""Graph users and events: CRUD, idempotent creates, extended properties, time zones, access rules."""
import httpx

from tests.sandbox.microsoft_support import app_token, event_body, graph, new_user

FOREIGN_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId"


def test_event_crud_changes_the_change_key_on_each_write(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])

    created = api.post("/me/events", json=event_body("Kick-off", location={"displayName": "Room 1"}))
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["subject"] == "Kick-off" and event["type"] == "singleInstance"
    assert event["start"] == {"dateTime": "2026-03-02T10:00:00.0000000", "timeZone": "UTC"}
    assert event["organizer"]["emailAddress"]["address"] == "ann@contoso.test"
    assert event["iCalUId"] and event["@odata.etag"] == f'W/"{event["changeKey"]}"'

    read = api.get(f"/users/{ann['id']}/events/{event['id']}").json()
    assert read["changeKey"] == event["changeKey"]
    patched = api.patch(f"/me/events/{event['id']}", json={"subject": "Kick-off (moved)", "isReminderOn": False})
    assert patched.status_code == 200
    assert patched.json()["changeKey"] != event["changeKey"]
    assert patched.json()["subject"] == "Kick-off (moved)" and patched.json()["isReminderOn"] is False
    assert patched.json()["lastModifiedDateTime"] >= event["lastModifiedDateTime"]

    assert api.delete(f"/me/events/{event['id']}").status_code == 204
    gone = api.get(f"/me/events/{event['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ErrorItemNotFound"


def test_patch_with_a_stale_if_match_is_refused_412_and_changes_nothing(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    event = api.post("/me/events", json=event_body("Kick-off")).json()
    moved = api.patch(f"/me/events/{event['id']}", json={"subject": "Moved"}, headers={"If-Match": event["@odata.etag"]})
    assert moved.status_code == 200, moved.text

    stale = api.patch(f"/me/events/{event['id']}", json={"subject": "Lost"}, headers={"If-Match": event["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert "change key passed in the request does not match" in stale.json()["error"]["message"]
    assert api.get(f"/me/events/{event['id']}").json()["subject"] == "Moved"

    current = moved.json()["@odata.etag"]
    in_batch = api.post("/$batch", json={"requests": [
        {"id": "1", "method": "PATCH", "url": f"/me/events/{event['id']}", "body": {"subject": "Batched"},
         "headers": {"Content-Type": "application/json", "If-Match": current}},
    ]}).json()["responses"][0]
    assert in_batch["status"] == 200 and in_batch["body"]["subject"] == "Batched"
    assert api.patch(f"/me/events/{event['id']}", json={"subject": "Any"}, headers={"If-Match": "*"}).status_code == 200


def test_transaction_id_makes_a_retried_create_return_the_first_event(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    body = event_body("Retry me", transactionId="crm-42-create")
    first, second = api.post("/me/events", json=body), api.post("/me/events", json=body)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["transactionId"] == "crm-42-create"
    assert [e["id"] for e in api.get("/me/events").json()["value"]] == [first.json()["id"]]
    changed = api.patch(f"/me/events/{first.json()['id']}", json={"transactionId": "other"})
    assert changed.status_code == 400


def test_extended_property_is_stored_expanded_and_filtered_on(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    tagged = api.post("/me/events", json=event_body("Tagged", singleValueExtendedProperties=[{"id": FOREIGN_ID, "value": "crm-7"}])).json()
    api.post("/me/events", json=event_body("Other", singleValueExtendedProperties=[{"id": FOREIGN_ID, "value": "crm-8"}]))
    api.post("/me/events", json=event_body("Plain"))
    assert "singleValueExtendedProperties" not in tagged

    expanded = api.get(f"/me/events/{tagged['id']}", params={"$expand": f"singleValueExtendedProperties($filter=id eq '{FOREIGN_ID}')"})
    assert expanded.json()["singleValueExtendedProperties"] == [{"id": FOREIGN_ID, "value": "crm-7"}]

    query = f"singleValueExtendedProperties/Any(ep: ep/id eq '{FOREIGN_ID}' and ep/value eq 'crm-7')"
    found = api.get("/me/events", params={"$filter": query}).json()["value"]
    assert [e["subject"] for e in found] == ["Tagged"]
    bad = api.post("/me/events", json=event_body(singleValueExtendedProperties=[{"id": "CrmId", "value": "x"}]))
    assert bad.status_code == 400


def test_refused_writes_answer_graph_errors(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    zone = api.post("/me/events", json=event_body(start="2026-03-02T10:00:00") | {"start": {"dateTime": "2026-03-02T10:00:00", "timeZone": "Mars/Olympus"}})
    assert zone.status_code == 400 and zone.json()["error"]["code"] == "TimeZoneNotSupportedException"
    all_day = api.post("/me/events", json=event_body(start="2026-03-02T10:00:00", end="2026-03-03T10:00:00", isAllDay=True))
    assert all_day.status_code == 400 and all_day.json()["error"]["code"] == "ErrorPropertyValidationFailure"
    unknown = api.post("/me/events", json=event_body(colour="red"))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "RequestBodyRead"
    backwards = api.post("/me/events", json=event_body(start="2026-03-02T12:00:00", end="2026-03-02T11:00:00"))
    assert backwards.status_code == 400


def test_windows_time_zones_and_prefer_outlook_timezone(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    body = event_body() | {
        "start": {"dateTime": "2026-07-01T09:00:00", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2026-07-01T10:00:00", "timeZone": "Pacific Standard Time"},
    }
    event = api.post("/me/events", json=body).json()
    assert event["start"] == {"dateTime": "2026-07-01T16:00:00.0000000", "timeZone": "UTC"}
    assert event["originalStartTimeZone"] == "Pacific Standard Time"
    local = api.get(f"/me/events/{event['id']}", headers={"Prefer": 'outlook.timezone="W. Europe Standard Time"'})
    assert local.json()["start"]["dateTime"] == "2026-07-01T18:00:00.0000000"
    assert local.headers["Preference-Applied"] == 'outlook.timezone="W. Europe Standard Time"'
    all_day = api.post("/me/events", json=event_body(start="2026-07-04T00:00:00", end="2026-07-05T00:00:00", isAllDay=True))
    assert all_day.status_code == 201 and all_day.json()["start"]["dateTime"] == "2026-07-04T00:00:00.0000000"


def test_delegated_token_reaches_only_its_own_mailbox_app_token_its_tenant(sandbox):
    ann, bob = new_user(sandbox, "ann@contoso.test"), new_user(sandbox, "bob@contoso.test")
    eve = new_user(sandbox, "eve@fabrikam.test", tenant_id="fabrikam")
    denied = graph(sandbox, ann["access_token"]).post(f"/users/{bob['id']}/events", json=event_body())
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"

    app_only = graph(sandbox, app_token(sandbox, ann))
    assert app_only.post(f"/users/{bob['email']}/events", json=event_body()).status_code == 201
    assert app_only.get(f"/users/{eve['id']}/events").status_code == 404
    me = app_only.get("/me")
    assert me.status_code == 400 and "delegated" in me.json()["error"]["message"]
    assert graph(sandbox, "at-forged").get("/me").status_code == 401


def test_users_are_paged_with_top_and_next_link(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    for name in ("bob", "cid", "dan"):
        new_user(sandbox, f"{name}@contoso.test")
    new_user(sandbox, "eve@fabrikam.test", tenant_id="fabrikam")
    api = graph(sandbox, app_token(sandbox, ann))
    first = api.get("/users", params={"$top": 3}).json()
    assert [u["userPrincipalName"] for u in first["value"]] == ["ann@contoso.test", "bob@contoso.test", "cid@contoso.test"]
    rest = httpx.get(first["@odata.nextLink"], headers=api.headers).json()
    assert [u["userPrincipalName"] for u in rest["value"]] == ["dan@contoso.test"] and "@odata.nextLink" not in rest
    assert api.get("/users", params={"$top": 1000}).status_code == 400
    assert len(api.get("/users").json()["value"]) == 4
    assert api.get(f"/users/{ann['id']}", params={"$select": "displayName"}).json().keys() >= {"id", "displayName"}


def test_recurring_series_is_expanded_in_calendar_view(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    weekly = {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"]},
        "range": {"type": "numbered", "startDate": "2026-03-02", "numberOfOccurrences": 4},
    }
    series = api.post("/me/events", json=event_body("Stand-up", recurrence=weekly)).json()
    assert series["type"] == "seriesMaster" and series["recurrence"]["pattern"]["type"] == "weekly"
    view = api.get("/me/calendarView", params={"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-03-31T00:00:00Z"}).json()
    starts = [(e["type"], e["seriesMasterId"], e["start"]["dateTime"][:10]) for e in view["value"]]
    assert starts == [("occurrence", series["id"], d) for d in ("2026-03-02", "2026-03-04", "2026-03-09", "2026-03-11")]
    missing = api.get("/me/calendarView")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "ErrorInvalidParameter"


def test_throttling_rule_surfaces_as_429_with_retry_after(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    rule = {"route": "/v1.0/me/events", "method": "POST", "rate_429": 1.0, "retry_after_s": 9}
    httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).raise_for_status()
    answer = api.post("/me/events", json=event_body())
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "9"
    assert answer.json()["error"]["code"] == "TooManyRequests"
    assert api.get("/me/events").json()["value"] == []


def test_a_meeting_lands_in_the_invitees_calendars_of_the_tenant_as_theirs_to_answer(sandbox):
    ann, bob = new_user(sandbox, "ann@contoso.test"), new_user(sandbox, "bob@contoso.test")
    eve = new_user(sandbox, "eve@fabrikam.test", tenant_id="fabrikam")
    ann_api, bob_api = graph(sandbox, ann["access_token"]), graph(sandbox, bob["access_token"])
    invitees = [{"emailAddress": {"address": a}, "type": "required"}
                for a in ("Bob@contoso.test", "eve@fabrikam.test", "someone@elsewhere.test")]
    meeting = ann_api.post("/me/events", json=event_body("Review", attendees=invitees)).json()
    assert meeting["isOrganizer"] is True

    [copy] = bob_api.get("/me/events").json()["value"]
    assert copy["id"] != meeting["id"] and copy["iCalUId"] == meeting["iCalUId"]
    assert copy["isOrganizer"] is False and copy["responseStatus"]["response"] == "notResponded"
    assert copy["organizer"]["emailAddress"]["address"] == "ann@contoso.test" and copy["subject"] == "Review"
    assert graph(sandbox, eve["access_token"]).get("/me/events").json()["value"] == [], "another tenant: mail only"

    ann_api.patch(f"/me/events/{meeting['id']}", json={"subject": "Review (moved)"})
    assert bob_api.get(f"/me/events/{copy['id']}").json()["subject"] == "Review (moved)"
    ann_api.delete(f"/me/events/{meeting['id']}")
    cancelled = bob_api.get(f"/me/events/{copy['id']}").json()
    assert cancelled["isCancelled"] is True, "Outlook keeps a cancelled meeting until the invitee removes it"


def test_an_event_seeded_as_another_client_left_it_reads_back_so_and_the_graph_api_still_refuses_it(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, ann["access_token"])
    custom = {"originalStartTimeZone": "tzone://Microsoft/Custom", "originalEndTimeZone": "tzone://Microsoft/Custom"}
    refused = api.post("/me/events", json=event_body("By hand", **custom) | {
        "start": {"dateTime": "2026-03-02T10:00:00", "timeZone": "tzone://Microsoft/Custom"}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "TimeZoneNotSupportedException"

    seeded = httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/users/{ann['id']}/events",
                        json={"event": event_body("Outlook desktop"), "read_as": custom})
    assert seeded.status_code == 201, seeded.text
    read = api.get(f"/me/events/{seeded.json()['id']}").json()
    assert (read["originalStartTimeZone"], read["originalEndTimeZone"], read["subject"]) == (
        "tzone://Microsoft/Custom", "tzone://Microsoft/Custom", "Outlook desktop")
    assert read["start"] == {"dateTime": "2026-03-02T10:00:00.0000000", "timeZone": "UTC"}
    bad = httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/users/{ann['id']}/events",
                     json={"event": {"subject": "No times"}})
    assert bad.status_code == 400, "what is stored is still a valid event"
    unknown = httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/users/nobody@contoso.test/events", json={})
    assert unknown.status_code == 404
