"""Drive v3 files in the sandbox, driven by the real client: folders, metadata, moves, trash, delete."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import httpx
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from sandbox.state import Grant
from tests.sandbox.drive_support import FOLDER, dora, folder, new_drive_user  # noqa: F401
from tests.sandbox.google_clients import reason_of


def test_a_folder_per_record_with_app_properties_found_again_by_query(sandbox, dora):
    crm = folder(dora, "CRM")
    lead = folder(dora, "Lead: Ann Smith", crm["id"], appProperties={"crmRecordId": "lead-1"})
    assert lead["mimeType"] == FOLDER and lead["parents"] == [crm["id"]]
    assert lead["appProperties"] == {"crmRecordId": "lead-1"}

    query = ("appProperties has { key='crmRecordId' and value='lead-1' } and trashed = false "
             f"and mimeType = '{FOLDER}' and '{crm['id']}' in parents")
    found = dora.drive.files().list(q=query, fields="files(id,name)").execute()
    assert found == {"files": [{"id": lead["id"], "name": "Lead: Ann Smith"}]}
    none = dora.drive.files().list(q="appProperties has { key='crmRecordId' and value='lead-2' }").execute()
    assert none["files"] == [] and none["kind"] == "drive#fileList"


def test_app_properties_are_private_to_the_app_that_wrote_them(sandbox, dora):
    lead = folder(dora, "Lead", appProperties={"crmRecordId": "lead-1"}, properties={"shared": "yes"})
    # The same user through another OAuth client (another app): a token granted to that client.
    token, _ = sandbox.sandbox.state.issue_access_token(Grant(dora.id, "another-app", ()))
    other_app = build("drive", "v3", credentials=Credentials(token=token), static_discovery=True,
                      cache_discovery=False, client_options={"api_endpoint": f"{sandbox.http_url}/drive/v3/"})
    seen = other_app.files().get(fileId=lead["id"], fields="appProperties,properties").execute()
    assert seen == {"appProperties": {}, "properties": {"shared": "yes"}}
    mine = "appProperties has { key='crmRecordId' and value='lead-1' }"
    assert other_app.files().list(q=mine).execute()["files"] == []
    assert [f["id"] for f in dora.drive.files().list(q=mine).execute()["files"]] == [lead["id"]]
    public = "properties has { key='shared' and value='yes' }"
    assert [f["id"] for f in other_app.files().list(q=public).execute()["files"]] == [lead["id"]]

    cleared = dora.drive.files().update(fileId=lead["id"], body={"appProperties": {"crmRecordId": None, "k": "v"}},
                                        fields="appProperties").execute()
    assert cleared == {"appProperties": {"k": "v"}}


def test_get_with_fields_and_defaults(sandbox, dora):
    made = dora.drive.files().create(body={"name": "notes.txt", "mimeType": "text/plain"}).execute()
    assert set(made) == {"kind", "id", "name", "mimeType"}
    got = dora.drive.files().get(fileId=made["id"], fields="id, parents, trashed, owners(emailAddress)").execute()
    assert got["trashed"] is False and got["owners"] == [{"emailAddress": "dora@example.com"}]
    with pytest.raises(HttpError) as raised:
        dora.drive.files().get(fileId=made["id"], fields="id,bogus").execute()
    assert raised.value.status_code == 400 and reason_of(raised.value) == "invalidParameter"
    root = dora.drive.files().get(fileId="root", fields="id,name").execute()
    assert got["parents"] == [root["id"]] and root["name"] == "My Drive"


def test_unknown_file_is_404_not_found(sandbox, dora):
    for call in (dora.drive.files().get(fileId="nope"), dora.drive.files().delete(fileId="nope"),
                 dora.drive.files().update(fileId="nope", body={"name": "x"})):
        with pytest.raises(HttpError) as raised:
            call.execute()
        assert raised.value.status_code == 404 and reason_of(raised.value) == "notFound"
        assert "File not found: nope." in str(raised.value)


def test_rename_move_and_the_single_parent_rule(sandbox, dora):
    a, b = folder(dora, "A"), folder(dora, "B")
    doc = dora.drive.files().create(body={"name": "doc", "parents": [a["id"]]}).execute()
    moved = dora.drive.files().update(fileId=doc["id"], body={"name": "renamed"}, addParents=b["id"],
                                      removeParents=a["id"], fields="name,parents").execute()
    assert moved == {"name": "renamed", "parents": [b["id"]]}
    with pytest.raises(HttpError) as raised:
        dora.drive.files().update(fileId=doc["id"], body={}, addParents=a["id"]).execute()
    assert raised.value.status_code == 403 and reason_of(raised.value) == "cannotAddParent"
    with pytest.raises(HttpError) as raised:
        dora.drive.files().create(body={"name": "two", "parents": [a["id"], b["id"]]}).execute()
    assert raised.value.status_code == 403
    with pytest.raises(HttpError) as raised:
        dora.drive.files().create(body={"name": "lost", "parents": ["missing"]}).execute()
    assert raised.value.status_code == 404


def test_trash_a_folder_trashes_its_content_and_empty_trash_deletes(sandbox, dora):
    lead = folder(dora, "Lead")
    inner = dora.drive.files().create(body={"name": "quote.pdf", "parents": [lead["id"]]}).execute()
    dora.drive.files().update(fileId=lead["id"], body={"trashed": True}).execute()
    got = dora.drive.files().get(fileId=inner["id"], fields="trashed,explicitlyTrashed").execute()
    assert got == {"trashed": True, "explicitlyTrashed": False}
    live = dora.drive.files().list(q="trashed = false").execute()["files"]
    assert live == []
    everything = dora.drive.files().list().execute()["files"]  # Drive lists trashed files unless asked not to
    assert {f["id"] for f in everything} == {lead["id"], inner["id"]}

    dora.drive.files().emptyTrash().execute()
    for gone in (lead, inner):
        with pytest.raises(HttpError) as raised:
            dora.drive.files().get(fileId=gone["id"]).execute()
        assert raised.value.status_code == 404


def test_delete_removes_a_folder_and_its_descendants(sandbox, dora):
    lead = folder(dora, "Lead")
    sub = folder(dora, "Sub", lead["id"])
    leaf = dora.drive.files().create(body={"name": "leaf", "parents": [sub["id"]]}).execute()
    dora.drive.files().delete(fileId=lead["id"]).execute()
    assert dora.drive.files().list().execute()["files"] == []
    with pytest.raises(HttpError):
        dora.drive.files().get(fileId=leaf["id"]).execute()


def test_list_pages_order_and_query_operators(sandbox, dora):
    parent = folder(dora, "Box")
    for name in ("c", "a", "b", "d", "e"):
        dora.drive.files().create(body={"name": name, "parents": [parent["id"]], "mimeType": "text/plain"}).execute()
    seen, token = [], None
    while True:
        page = dora.drive.files().list(q=f"'{parent['id']}' in parents", pageSize=2, orderBy="name",
                                       pageToken=token, fields="nextPageToken,files(name)").execute()
        assert len(page["files"]) <= 2
        seen += [f["name"] for f in page["files"]]
        token = page.get("nextPageToken")
        if token is None:
            break
    assert seen == ["a", "b", "c", "d", "e"]
    q = "(name = 'a' or name contains 'd') and not name = 'zz' and mimeType != 'application/pdf'"
    names = sorted(f["name"] for f in dora.drive.files().list(q=q).execute()["files"])
    assert names == ["a", "d"]
    escaped = dora.drive.files().create(body={"name": "Ann's deal"}).execute()
    found = dora.drive.files().list(q="name = 'Ann\\'s deal'").execute()["files"]
    assert [f["id"] for f in found] == [escaped["id"]]


@pytest.mark.parametrize("q", ["fullText contains 'x'", "name = ", "name = 'a' and", "'x' in owners",
                               "sharedWithMe", "name ~ 'a'"])
def test_unsupported_or_malformed_queries_are_400_invalid_on_q(sandbox, dora, q):
    with pytest.raises(HttpError) as raised:
        dora.drive.files().list(q=q).execute()
    assert raised.value.status_code == 400 and reason_of(raised.value) == "invalid"
    assert raised.value.error_details[0]["location"] == "q"


def test_bad_page_size_spaces_and_fields_are_400(sandbox, dora):
    for call in (dora.drive.files().list(pageSize=1001), dora.drive.files().list(spaces="photos"),
                 dora.drive.files().list(fields="files(id"), dora.drive.files().list(fields="bogus")):
        with pytest.raises(HttpError) as raised:
            call.execute()
        assert raised.value.status_code == 400


def test_app_data_folder_space(sandbox, dora):
    hidden = dora.drive.files().create(body={"name": "state.json", "parents": ["appDataFolder"]}).execute()
    visible = dora.drive.files().create(body={"name": "visible"}).execute()
    assert [f["id"] for f in dora.drive.files().list().execute()["files"]] == [visible["id"]]
    app_data = dora.drive.files().list(spaces="appDataFolder").execute()["files"]
    assert [f["id"] for f in app_data] == [hidden["id"]]


def test_each_account_has_its_own_drive_and_reset_forgets(sandbox, dora):
    mine = folder(dora, "Mine")
    other = new_drive_user(sandbox, "olaf@example.com")
    assert other.drive.files().list().execute()["files"] == []
    with pytest.raises(HttpError) as raised:
        other.drive.files().get(fileId=mine["id"]).execute()
    assert raised.value.status_code == 404
    counters = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["calls"]
    assert counters["POST /drive/v3/files"] == 1 and counters["GET /drive/v3/files"] == 1
    httpx.post(f"{sandbox.http_url}/_sandbox/reset").raise_for_status()
    again = new_drive_user(sandbox, "dora@example.com")
    assert again.drive.files().list().execute()["files"] == []


def test_batch_of_folder_creates_and_the_100_call_limit(sandbox, dora):
    made, errors = [], []

    def done(_id, response, error):
        (errors if error else made).append(error or response)

    batch = BatchHttpRequest(callback=done, batch_uri=f"{sandbox.https_url}/batch/drive/v3")
    for index in range(3):
        batch.add(dora.drive.files().create(body={"name": f"Deal {index}", "mimeType": FOLDER}))
    batch.execute()
    assert errors == [] and sorted(f["name"] for f in made) == ["Deal 0", "Deal 1", "Deal 2"]

    too_many = BatchHttpRequest(callback=done, batch_uri=f"{sandbox.https_url}/batch/drive/v3")
    for _ in range(101):  # the client lets a batch hold 1,000 calls; Drive takes 100
        too_many.add(dora.drive.files().get(fileId="root"))
    with pytest.raises(HttpError) as raised:
        too_many.execute()
    assert raised.value.status_code == 400


def test_root_alias_and_time_comparisons_in_queries(sandbox, dora):
    top = folder(dora, "Top")
    folder(dora, "Inside", top["id"])
    at_root = dora.drive.files().list(q="'root' in parents and trashed = false").execute()["files"]
    assert [f["id"] for f in at_root] == [top["id"]]
    # A time without an offset is UTC (the search guide's own example has none).
    assert len(dora.drive.files().list(q="modifiedTime > '2012-06-04T12:00:00'").execute()["files"]) == 2
    assert dora.drive.files().list(q="createdTime < '2012-06-04T12:00:00Z'").execute()["files"] == []
    with pytest.raises(HttpError) as raised:
        dora.drive.files().list(q="modifiedTime > 'yesterday'").execute()
    assert raised.value.status_code == 400


def test_update_refuses_parents_in_the_body(sandbox, dora):
    a, b = folder(dora, "A"), folder(dora, "B")
    with pytest.raises(HttpError) as raised:
        dora.drive.files().update(fileId=a["id"], body={"parents": [b["id"]]}).execute()
    assert raised.value.status_code == 403 and reason_of(raised.value) == "fieldNotWritable"
