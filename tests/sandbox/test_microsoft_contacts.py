"""Graph contacts in the sandbox over plain HTTP with msal tokens: CRUD, folders, extended properties,
paging, delta rounds with removals, 410 on a lost sync state, counters and faults."""
import datetime as dt

import httpx

from tests.fixtures.net import wait_for
from tests.sandbox.microsoft_support import Receiver, app_token, calls, graph, new_user

CRM_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmRecordId"


def person(given: str, surname: str = "Doe", **extra) -> dict:
    return {"givenName": given, "surname": surname,
            "emailAddresses": [{"address": f"{given.lower()}@example.com", "name": f"{given} {surname}"}], **extra}


def delta_round(api: httpx.Client, first_url: str, page_size: int | None = None) -> tuple[list[list[dict]], str]:
    """Follow nextLinks to the deltaLink: (pages of values, deltaLink)."""
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    url, pages = first_url, []
    while True:
        answer = api.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_contact_crud_with_extended_property_and_graph_errors(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, app_token(sandbox, user))
    base = f"/users/{user['id']}/contacts"
    created = api.post(base, json=person("Bob", singleValueExtendedProperties=[{"id": CRM_ID, "value": "crm-1"}]))
    assert created.status_code == 201, created.text
    bob = created.json()
    assert bob["displayName"] == "Bob Doe" and bob["emailAddresses"][0]["address"] == "bob@example.com"
    assert bob["parentFolderId"] and bob["changeKey"] and "singleValueExtendedProperties" not in bob

    expand = {"$expand": f"singleValueExtendedProperties($filter=id eq '{CRM_ID}')"}
    read = api.get(f"{base}/{bob['id']}", params=expand).json()
    assert read["singleValueExtendedProperties"] == [{"id": CRM_ID, "value": "crm-1"}]
    found = api.get(base, params={"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{CRM_ID}' and ep/value eq 'crm-1')"})
    assert [c["id"] for c in found.json()["value"]] == [bob["id"]]

    patched = api.patch(f"{base}/{bob['id']}", json={"jobTitle": "CFO", "businessPhones": ["+1 555 0100"],
                                                       "birthday": "1980-05-17T00:00:00+02:00"}).json()
    assert patched["jobTitle"] == "CFO" and patched["changeKey"] != bob["changeKey"] and patched["givenName"] == "Bob"
    assert patched["birthday"] == "1980-05-16T22:00:00Z" and patched["businessPhones"] == ["+1 555 0100"]
    assert api.delete(f"{base}/{bob['id']}").status_code == 204
    gone = api.get(f"{base}/{bob['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "ErrorItemNotFound"

    refused = api.post(base, json={"givenName": "X", "favouriteColour": "red"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "RequestBodyRead"
    assert api.post(base, json={"emailAddresses": [{"name": "no address"}]}).status_code == 400
    counted = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["calls"]
    assert counted["POST /v1.0/users/{user_id}/contacts"] == 3
    assert counted["GET /v1.0/users/{user_id}/contacts/{contact_id}"] == 2


def test_contacts_are_paged_with_top_and_next_link(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    for n in range(12):
        api.post("/me/contacts", json=person(f"P{n:02d}"))
    first = api.get("/me/contacts").json()
    assert len(first["value"]) == 10, "Graph's default page is 10"
    rest = api.get(first["@odata.nextLink"]).json()
    assert len(rest["value"]) == 2 and "@odata.nextLink" not in rest
    names, url = [], "/me/contacts?$top=5"
    while url:
        page = api.get(url).json()
        names += [c["givenName"] for c in page["value"]]
        url = page.get("@odata.nextLink")
    assert names == [f"P{n:02d}" for n in range(12)]


def test_folders_hold_their_own_contacts(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    folder = api.post("/me/contactFolders", json={"displayName": "CRM contacts"})
    assert folder.status_code == 201
    folder_id = folder.json()["id"]
    again = api.post("/me/contactFolders", json={"displayName": "crm CONTACTS"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "ErrorFolderExists"
    assert [f["displayName"] for f in api.get("/me/contactFolders").json()["value"]] == ["CRM contacts"]

    inside = api.post(f"/me/contactFolders/{folder_id}/contacts", json=person("Cy")).json()
    api.post("/me/contacts", json=person("Di"))
    assert inside["parentFolderId"] == folder_id
    assert [c["givenName"] for c in api.get(f"/me/contactFolders/{folder_id}/contacts").json()["value"]] == ["Cy"]
    assert [c["givenName"] for c in api.get("/me/contacts").json()["value"]] == ["Di"]
    assert api.get(f"/me/contacts/{inside['id']}").status_code == 200, "an item id reaches any folder"

    assert api.delete(f"/me/contactFolders/{folder_id}").status_code == 204
    assert api.get(f"/me/contactFolders/{folder_id}").status_code == 404
    assert api.get(f"/me/contacts/{inside['id']}").status_code == 404, "its contacts went with it"
    assert api.get("/me/contactFolders/nope/contacts").status_code == 404


def test_folder_delta_round_then_changes_and_removals(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    folder_id = api.post("/me/contactFolders", json={"displayName": "CRM contacts"}).json()["id"]
    delta = f"/me/contactFolders/{folder_id}/contacts/delta"
    ids = [api.post(f"/me/contactFolders/{folder_id}/contacts", json=person(f"P{n}")).json()["id"] for n in range(5)]
    api.post("/me/contacts", json=person("Elsewhere"))

    pages, delta_link = delta_round(api, f"{delta}?$select=givenName,emailAddresses", page_size=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    first = pages[0][0]
    assert set(first) == {"@odata.type", "@odata.etag", "id", "givenName", "emailAddresses"}
    assert sorted(c["id"] for p in pages for c in p) == sorted(ids)
    assert delta_round(api, delta_link)[0] == [[]]

    api.patch(f"/me/contacts/{ids[0]}", json={"givenName": "Renamed"})
    api.delete(f"/me/contacts/{ids[1]}")
    added = api.post(f"/me/contactFolders/{folder_id}/contacts", json=person("New")).json()
    short_lived = api.post(f"/me/contactFolders/{folder_id}/contacts", json=person("Brief")).json()
    api.delete(f"/me/contacts/{short_lived['id']}")
    pages, next_link = delta_round(api, delta_link)
    changed = {c["id"]: c for p in pages for c in p}
    assert set(changed) == {ids[0], ids[1], added["id"]}, "created-then-deleted in between is not reported"
    assert changed[ids[0]]["givenName"] == "Renamed" and set(changed[ids[0]]) >= {"givenName", "emailAddresses"}
    assert "jobTitle" not in changed[ids[0]], "the $select of the first call holds for the whole sync"
    assert changed[ids[1]] == {"@odata.type": "#microsoft.graph.contact", "id": ids[1], "@removed": {"reason": "deleted"}}
    assert delta_round(api, next_link)[0] == [[]]


def test_default_folder_delta_and_a_lost_sync_state(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, user["access_token"])
    api.post("/me/contacts", json=person("Ann"))
    pages, delta_link = delta_round(api, "/me/contacts/delta")
    assert [c["givenName"] for p in pages for c in p] == ["Ann"]
    forced = httpx.post(f"{sandbox.http_url}/_sandbox/microsoft/users/{user['id']}/invalidate-delta-tokens")
    assert forced.status_code == 200
    lost = api.get(delta_link)
    assert lost.status_code == 410 and lost.json()["error"]["code"] == "SyncStateNotFound"
    assert lost.headers["Location"].endswith("/v1.0/me/contacts/delta")
    assert api.get("/me/contacts/delta?$deltatoken=garbage").status_code == 410
    assert api.get("/me/contacts/delta?$filter=givenName eq 'Ann'").status_code == 400
    again, _ = delta_round(api, lost.headers["Location"])
    assert [c["givenName"] for p in again for c in p] == ["Ann"]


def test_contact_routes_are_faulted_like_event_routes(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    rule = {"method": "POST", "route": "/v1.0/me/contacts", "rate_429": 1.0, "retry_after_s": 7}
    assert httpx.post(f"{sandbox.http_url}/_sandbox/faults", json=rule).status_code == 201
    throttled = api.post("/me/contacts", json=person("Ann"))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert api.get("/me/contacts").json()["value"] == [], "the throttled create wrote nothing"
    assert calls(sandbox, "POST /v1.0/me/contacts") == 1


def test_another_users_contacts_are_out_of_reach_of_a_delegated_token(sandbox):
    ann = new_user(sandbox, "ann@contoso.test")
    bob = new_user(sandbox, "bob@contoso.test", tenant_id=ann["tenant_id"])
    refused = graph(sandbox, ann["access_token"]).get(f"/users/{bob['id']}/contacts")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ErrorAccessDenied"


def test_contact_folders_delta_reports_created_and_deleted_folders(sandbox):
    api = graph(sandbox, new_user(sandbox, "ann@contoso.test")["access_token"])
    kept = api.post("/me/contactFolders", json={"displayName": "CRM contacts"}).json()
    doomed = api.post("/me/contactFolders", json={"displayName": "Old"}).json()
    pages, delta_link = delta_round(api, "/me/contactFolders/delta")
    assert sorted(f["displayName"] for p in pages for f in p) == ["CRM contacts", "Old"]
    api.delete(f"/me/contactFolders/{doomed['id']}")
    newer = api.post("/me/contactFolders", json={"displayName": "Newer"}).json()
    changed = {f["id"]: f for p in delta_round(api, delta_link)[0] for f in p}
    assert set(changed) == {doomed["id"], newer["id"]} and kept["id"] not in changed
    assert changed[doomed["id"]]["@removed"] == {"reason": "deleted"}
    assert changed[newer["id"]]["@odata.type"] == "#microsoft.graph.contactFolder"


def test_subscriptions_on_contacts_and_on_one_folder_hear_only_their_contacts(sandbox):
    user = new_user(sandbox, "ann@contoso.test")
    api = graph(sandbox, user["access_token"])
    folder_id = api.post("/me/contactFolders", json={"displayName": "CRM contacts"}).json()["id"]
    receiver = Receiver()
    try:
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for path, resource in (("/all", "me/contacts"), ("/folder", f"me/contactFolders/{folder_id}/contacts")):
            created = api.post("/subscriptions", json={
                "changeType": "created,updated,deleted", "notificationUrl": receiver.url(path),
                "resource": resource, "expirationDateTime": expires, "clientState": "s"})
            assert created.status_code == 201, created.text
        unknown_folder = api.post("/subscriptions", json={
            "changeType": "created", "notificationUrl": receiver.url("/x"), "resource": "me/contactFolders/nope/contacts",
            "expirationDateTime": expires})
        assert unknown_folder.status_code == 404

        in_folder = api.post(f"/me/contactFolders/{folder_id}/contacts", json=person("Cy")).json()
        default = api.post("/me/contacts", json=person("Di")).json()
        api.patch(f"/me/contacts/{in_folder['id']}", json={"jobTitle": "CTO"})
        api.post("/me/events", json={"subject": "not a contact", "start": {"dateTime": "2026-03-02T10:00:00", "timeZone": "UTC"},
                                     "end": {"dateTime": "2026-03-02T11:00:00", "timeZone": "UTC"}})
        wait_for(lambda: len(receiver.notifications("/all")) == 3 and len(receiver.notifications("/folder")) == 2,
                 what="the contact notifications")
        assert sorted((n["changeType"], n["resourceData"]["id"]) for n in receiver.notifications("/folder")) == [
            ("created", in_folder["id"]), ("updated", in_folder["id"])]
        assert {n["resourceData"]["id"] for n in receiver.notifications("/all")} == {in_folder["id"], default["id"]}
        note = receiver.notifications("/all")[0]
        assert note["resourceData"]["@odata.type"] == "#Microsoft.Graph.Contact"
        assert note["resource"].startswith(f"Users/{user['id']}/Contacts/")
    finally:
        receiver.close()
