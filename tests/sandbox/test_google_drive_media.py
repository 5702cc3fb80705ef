"""Drive v3 uploads and downloads in the sandbox, through the real client's media classes."""
# ruff: noqa: F811 (pytest fixtures are imported by name and then requested as parameters)
import hashlib
import io

import httpx
import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseUpload

from tests.sandbox.drive_support import dora, folder  # noqa: F401
from tests.sandbox.google_clients import reason_of


def media(data: bytes, mimetype: str = "application/pdf", **options) -> MediaIoBaseUpload:
    return MediaIoBaseUpload(io.BytesIO(data), mimetype=mimetype, **options)


def test_multipart_upload_into_a_record_folder_and_download(sandbox, dora):
    lead = folder(dora, "Lead")
    data = b"%PDF-1.4\r\n" + bytes(range(256)) * 10 + b"\n"
    made = dora.drive.files().create(body={"name": "quote.pdf", "parents": [lead["id"]]}, media_body=media(data),
                                     fields="id,name,mimeType,size,md5Checksum,parents").execute()
    assert made["mimeType"] == "application/pdf" and made["parents"] == [lead["id"]]
    assert made["size"] == str(len(data)) and made["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert dora.drive.files().get_media(fileId=made["id"]).execute() == data


def test_simple_media_upload_has_no_metadata(sandbox, dora):
    made = dora.drive.files().create(media_body=media(b"hello", "text/plain"), fields="name,mimeType").execute()
    assert made == {"name": "Untitled", "mimeType": "text/plain"}


def test_resumable_upload_in_256_kib_chunks(sandbox, dora):
    data = bytes(range(256)) * (3 * 1024 + 100)  # ~ 3.1 chunks of 256 KiB
    request = dora.drive.files().create(body={"name": "big.bin"}, fields="id,size,md5Checksum",
                                        media_body=media(data, "application/octet-stream", resumable=True,
                                                         chunksize=256 * 1024))
    progress, response = [], None
    while response is None:
        status, response = request.next_chunk()
        if status is not None:
            progress.append(status.resumable_progress)
    assert progress == [256 * 1024, 512 * 1024, 768 * 1024]
    assert response["size"] == str(len(data)) and response["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert dora.drive.files().get_media(fileId=response["id"]).execute() == data


def test_resumable_status_query_and_refusals(sandbox, dora):
    dora.drive.files().list().execute()  # makes sure the client holds a fresh access token
    token = dora.drive._http.credentials.token
    auth = {"Authorization": f"Bearer {token}"}
    start = httpx.post(f"{sandbox.http_url}/upload/drive/v3/files?uploadType=resumable", headers={
        **auth, "Content-Type": "application/json; charset=UTF-8", "X-Upload-Content-Type": "text/plain",
        "X-Upload-Content-Length": "300000"}, content=b'{"name": "r.txt"}')
    assert start.status_code == 200
    session = start.headers["Location"]
    assert "upload_id=" in session
    nothing = httpx.put(session, headers={**auth, "Content-Range": "bytes */300000"})
    assert nothing.status_code == 308 and "range" not in nothing.headers
    odd = httpx.put(session, headers={**auth, "Content-Range": "bytes 0-999/300000"}, content=b"x" * 1000)
    assert odd.status_code == 400  # not the last chunk and not a multiple of 256 KiB
    first = httpx.put(session, headers={**auth, "Content-Range": "bytes 0-262143/300000"}, content=b"x" * 262144)
    assert first.status_code == 308 and first.headers["range"] == "bytes=0-262143"
    status = httpx.put(session, headers={**auth, "Content-Range": "bytes */300000"})
    assert status.status_code == 308 and status.headers["range"] == "bytes=0-262143"
    last = httpx.put(session, headers={**auth, "Content-Range": "bytes 262144-299999/300000"},
                     content=b"y" * (300000 - 262144))
    assert last.status_code == 200 and last.json()["name"] == "r.txt"
    gone = httpx.put(session, headers={**auth, "Content-Range": "bytes */300000"})
    assert gone.status_code == 404


def test_update_replaces_content(sandbox, dora):
    made = dora.drive.files().create(body={"name": "v.txt"}, media_body=media(b"one", "text/plain")).execute()
    dora.drive.files().update(fileId=made["id"], media_body=media(b"two", "text/plain")).execute()
    assert dora.drive.files().get_media(fileId=made["id"]).execute() == b"two"
    got = dora.drive.files().get(fileId=made["id"], fields="version").execute()
    assert int(got["version"]) == 2


def test_a_folder_cannot_be_downloaded(sandbox, dora):
    lead = folder(dora, "Lead")
    with pytest.raises(HttpError) as raised:
        dora.drive.files().get_media(fileId=lead["id"]).execute()
    assert raised.value.status_code == 403 and reason_of(raised.value) == "fileNotDownloadable"


def test_upload_without_a_known_upload_type_is_400(sandbox, dora):
    dora.drive.files().list().execute()
    auth = {"Authorization": f"Bearer {dora.drive._http.credentials.token}"}
    answer = httpx.post(f"{sandbox.http_url}/upload/drive/v3/files?uploadType=chunky", headers=auth, content=b"x")
    assert answer.status_code == 400 and answer.json()["error"]["errors"][0]["location"] == "uploadType"
    bad = httpx.post(f"{sandbox.http_url}/upload/drive/v3/files?uploadType=multipart",
                     headers={**auth, "Content-Type": "multipart/related; boundary=b"}, content=b"--b\r\n\r\nx\r\n--b--")
    assert bad.status_code == 400
