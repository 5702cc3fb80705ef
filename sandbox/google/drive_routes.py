"""Drive v3 over HTTP under /drive/v3/ and /upload/drive/v3/, in the shapes of the real API
(https://developers.google.com/workspace/drive/api/reference/rest/v3): files create/get/list/update/delete,
emptyTrash, media uploads and downloads (`alt=media`), changes getStartPageToken/list/watch, channels.stop.

Handlers are plain `async def handler(request)` routes, as Calendar's are, so `sandbox.dispatch.Calls`
counts, faults and serves them directly.
"""
from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sandbox.errors import google_error
from sandbox.google.auth import google_caller
from sandbox.google.calendar_routes import json_body, json_response
from sandbox.google.channels import ChannelRegistry
from sandbox.google.drive_changes import list_changes, page_size, start_page_token
from sandbox.google.drive_fields import ALL, FILE_DEFAULT, apply_fields, parse_fields
from sandbox.google.drive_query import compile_query
from sandbox.google.drive_store import APP_DATA, FOLDER, GOOGLE_APPS, DriveStore, file_view
from sandbox.google.drive_uploads import Sessions, parse_json_meta, parse_multipart

PREFIX = "/drive/v3"
UPLOAD_PREFIX = "/upload/drive/v3"
LIST_DEFAULT = {"kind": None, "nextPageToken": None, "incompleteSearch": None, "files": FILE_DEFAULT}
CHANGES_DEFAULT = {"kind": None, "nextPageToken": None, "newStartPageToken": None,
                   "changes": {"kind": None, "changeType": None, "time": None, "removed": None, "fileId": None,
                               "file": FILE_DEFAULT}}
# The File fields the sandbox keeps; a mask naming another is refused (400 invalidParameter).
FILE_FIELDS = frozenset({"kind", "id", "name", "mimeType", "parents", "spaces", "starred", "trashed",
                         "explicitlyTrashed", "createdTime", "modifiedTime", "version", "ownedByMe", "owners",
                         "appProperties", "properties", "webViewLink", "description", "size", "md5Checksum"})
SPACES = frozenset({"drive", APP_DATA})
# orderBy keys (https://developers.google.com/workspace/drive/api/reference/rest/v3/files/list#query-parameters)
ORDER_KEYS = {"createdTime": "createdTime", "modifiedTime": "modifiedTime", "name": "name",
              "name_natural": "name", "recency": "modifiedTime", "starred": "starred",
              "folder": "mimeType"}


def _ids(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _order(raw: str | None):
    keys = []
    for clause in _ids(raw):
        name, _, direction = clause.partition(" ")
        if name not in ORDER_KEYS or direction.strip() not in ("", "desc"):
            raise google_error(400, "invalid", f"Invalid Value: {clause}", location="orderBy")
        keys.append((ORDER_KEYS[name], direction.strip() == "desc", name == "folder"))
    return keys


def _sorted(views: list[dict], keys) -> list[dict]:
    for field, descending, folder_first in reversed(keys):
        if folder_first:  # folders before files ascending, as Drive sorts `folder`
            views.sort(key=lambda v: v["mimeType"] != FOLDER, reverse=descending)
        else:
            views.sort(key=lambda v: v[field], reverse=descending)
    return views


def router(sandbox, store: DriveStore, channels: ChannelRegistry, sessions: Sessions) -> APIRouter:
    api = APIRouter(tags=["google drive"])
    base_url = sandbox.config.http_base_url

    def route(method: str, path: str):
        def register(handler):
            api.add_route(path, handler, methods=[method], include_in_schema=False)
            return handler
        return register

    def caller(request: Request):
        account, grant = google_caller(sandbox, request)
        return account, grant.client_id, store.drive(account.id)

    def render(account, client_id: str, drive, file) -> dict:
        owner = {"kind": "drive#user", "displayName": account.display_name, "emailAddress": account.email,
                 "me": True, "permissionId": account.id}
        return file_view(drive, store, file, client_id, owner)

    def answer_file(request: Request, account, client_id, drive, file, fields: str | None = None) -> Response:
        mask = parse_fields(fields if fields is not None else request.query_params.get("fields"), FILE_DEFAULT)
        return json_response(apply_fields(render(account, client_id, drive, file), mask, FILE_FIELDS))

    def changed(account) -> None:
        channels.notify(f"drive:{account.id}", "change")

    # --- files -------------------------------------------------------------------------------------------
    @route("POST", PREFIX + "/files")
    async def create_file(request: Request):
        account, client_id, drive = caller(request)
        file = store.create(account.id, client_id, await json_body(request), None, None)
        changed(account)
        return answer_file(request, account, client_id, drive, file)

    @route("GET", PREFIX + "/files")
    async def list_files(request: Request):
        account, client_id, drive = caller(request)
        params = request.query_params
        mask = parse_fields(params.get("fields"), LIST_DEFAULT)
        predicate = compile_query(params.get("q"), {"root": drive.root_id, APP_DATA: drive.app_data_id})
        spaces = set(_ids(params.get("spaces") or "drive"))
        if not spaces <= SPACES:
            raise google_error(400, "invalid", f"Invalid Value: {params.get('spaces')}", location="spaces")
        size = page_size(params.get("pageSize"))
        token = params.get("pageToken")
        if token is not None and not (token.startswith("o") and token[1:].isdigit()):
            raise google_error(400, "invalid", f"Invalid Value: {token}", location="pageToken")
        offset = int(token[1:]) if token else 0
        order = _order(params.get("orderBy"))
        with store.lock:
            views = [render(account, client_id, drive, f) for f in drive.files.values()
                     if f.space in spaces and f.id not in (drive.root_id, drive.app_data_id)]
        if predicate is not None:
            views = [v for v in views if predicate(v)]
        views = _sorted(views, order)
        page = {"kind": "drive#fileList", "incompleteSearch": False, "files": views[offset:offset + size]}
        if offset + size < len(views):
            page["nextPageToken"] = f"o{offset + size}"
        return json_response(apply_fields(page, mask, frozenset(LIST_DEFAULT)))

    @route("DELETE", PREFIX + "/files/trash")
    async def empty_trash(request: Request):
        account, _, _ = caller(request)
        if store.empty_trash(account.id):
            changed(account)
        return Response(status_code=204)

    @route("GET", PREFIX + "/files/{fileId}")
    async def get_file(request: Request):
        account, client_id, drive = caller(request)
        with store.lock:
            file = store.get(drive, request.path_params["fileId"])
        if request.query_params.get("alt") == "media":
            if file.mime_type.startswith(GOOGLE_APPS) or file.content is None:
                # https://developers.google.com/workspace/drive/api/guides/handle-errors#fileNotDownloadable
                raise google_error(403, "fileNotDownloadable",
                                   "Only files with binary content can be downloaded. Use Export with Docs Editors "
                                   "files.", location="alt")
            return Response(bytes(file.content), media_type=file.mime_type)
        return answer_file(request, account, client_id, drive, file)

    async def update(request: Request, meta: dict, content: bytes | None = None, content_type: str | None = None):
        account, client_id, drive = caller(request)
        params = request.query_params
        file = store.update(account.id, client_id, request.path_params["fileId"], meta,
                            _ids(params.get("addParents")), _ids(params.get("removeParents")), content, content_type)
        changed(account)
        return answer_file(request, account, client_id, drive, file)

    @route("PATCH", PREFIX + "/files/{fileId}")
    async def update_file(request: Request):
        return await update(request, await json_body(request))

    @route("DELETE", PREFIX + "/files/{fileId}")
    async def delete_file(request: Request):
        account, _, _ = caller(request)
        store.delete(account.id, request.path_params["fileId"])
        changed(account)
        return Response(status_code=204)

    # --- uploads -----------------------------------------------------------------------------------------
    async def upload(request: Request, file_id: str | None):
        """POST (create) or PATCH (update) under /upload: the three upload types."""
        account, client_id, drive = caller(request)
        kind = request.query_params.get("uploadType")
        body = await request.body()
        content_type = request.headers.get("content-type", "application/octet-stream")
        if kind == "resumable":
            session = sessions.open(account.id, client_id, parse_json_meta(body), request.headers, file_id,
                                    request.query_params.get("fields"))
            location = f"{str(request.base_url).rstrip('/')}{UPLOAD_PREFIX}/files?uploadType=resumable&upload_id={session.id}"
            return Response(status_code=200, headers={"Location": location, "X-GUploader-UploadID": session.id})
        if kind == "media":
            meta, content = {}, body
        elif kind == "multipart":
            meta, content, content_type = parse_multipart(body, content_type)
        else:
            raise google_error(400, "invalid", f"Invalid Value: uploadType={kind}", location="uploadType")
        if file_id is not None:
            return await update(request, meta, content, content_type)
        file = store.create(account.id, client_id, meta, content, content_type)
        changed(account)
        return answer_file(request, account, client_id, drive, file)

    @route("POST", UPLOAD_PREFIX + "/files")
    async def upload_new(request: Request):
        return await upload(request, None)

    @route("PATCH", UPLOAD_PREFIX + "/files/{fileId}")
    async def upload_existing(request: Request):
        return await upload(request, request.path_params["fileId"])

    @route("PUT", UPLOAD_PREFIX + "/files")
    async def upload_chunk(request: Request):
        account, client_id, drive = caller(request)
        session = sessions.get(request.query_params.get("upload_id"), account.id)
        if not sessions.put(session, request.headers.get("content-range"), await request.body()):
            headers = {"Range": f"bytes=0-{len(session.received) - 1}"} if session.received else {}
            return Response(status_code=308, headers=headers)
        sessions.finish(session)
        content, content_type = bytes(session.received), session.content_type
        if session.file_id is not None:
            file = store.update(account.id, session.client_id, session.file_id, session.meta, [], [], content,
                                content_type)
        else:
            file = store.create(account.id, session.client_id, session.meta, content, content_type)
        changed(account)
        return answer_file(request, account, client_id, drive, file, session.fields)

    # --- changes and channels ----------------------------------------------------------------------------
    @route("GET", PREFIX + "/changes/startPageToken")
    async def get_start_page_token(request: Request):
        _, _, drive = caller(request)
        body = {"kind": "drive#startPageToken", "startPageToken": start_page_token(drive)}
        return json_response(apply_fields(body, parse_fields(request.query_params.get("fields"), ALL)))

    @route("GET", PREFIX + "/changes")
    async def get_changes(request: Request):
        account, client_id, drive = caller(request)
        params = request.query_params
        mask = parse_fields(params.get("fields"), CHANGES_DEFAULT)
        with store.lock:
            page = list_changes(drive, params.get("pageToken"), page_size(params.get("pageSize")),
                                params.get("includeRemoved", "true") != "false",
                                lambda file: render(account, client_id, drive, file))
        return json_response(apply_fields(page, mask, frozenset(CHANGES_DEFAULT)))

    @route("POST", PREFIX + "/changes/watch")
    async def watch_changes(request: Request):
        account, _, drive = caller(request)
        token = request.query_params.get("pageToken")
        if token is None:
            raise google_error(400, "required", "Required parameter: pageToken", location="pageToken")
        list_changes(drive, token, 1, True, lambda file: {})  # refuses a bad token as changes.list does
        channel = channels.watch(account.id, f"drive:{account.id}", store.next_resource_id(),
                                 f"{base_url}{PREFIX}/changes?alt=json&pageToken={token}", await json_body(request))
        return json_response(channel.to_json())

    @route("POST", PREFIX + "/channels/stop")
    async def stop_channel(request: Request):
        account, _, _ = caller(request)
        channels.stop(account.id, await json_body(request))
        return Response(status_code=204)

    async def not_served(request: Request):
        raise google_error(404, "notFound", "Not Found")

    for prefix in (PREFIX, UPLOAD_PREFIX):
        api.add_route(prefix + "/{unknown:path}", not_served, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    return api

