"""Gmail v1 (https://developers.google.com/workspace/gmail/api/reference/rest): users.messages list/get,
users.history.list, users.threads.get, users.getProfile, users.watch and users.stop, plus batch.

Paths are the discovery document's (`gmail/v1/users/{userId}/...` under the root URL), so the real
client reaches them with `client_options={"api_endpoint": f"{sandbox}/"}`. Strictness kept:
maxResults default 100, max 500 (list and history); history.list needs startHistoryId and answers
404 for one older than the mailbox keeps (guides/sync: "perform a full sync"); userId is `me` or the
signed-in address (else 403 delegation denied); messages.get formats minimal, metadata (with
metadataHeaders), full and raw (base64url of the RFC 2822 bytes).
"""
from __future__ import annotations

import base64
import email
import time
from email import policy
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from sandbox.errors import google_error
from sandbox.google import batch
from sandbox.google.auth import google_account
from sandbox.google.gmail_control import control_router
from sandbox.google.gmail_store import GmailStore, Mailbox, StoredMessage, Watch

API = "gmail/v1"
MAX_RESULTS = 500
WATCH_TTL_MS = 7 * 24 * 3600 * 1000  # users.watch: renew at least every 7 days


def routers(sandbox) -> list[APIRouter]:
    store = GmailStore(sandbox.config.gmail_push_min_interval_s)
    sandbox.state.on_reset(store.reset)
    return [api_router(sandbox, store), control_router(sandbox, store),
            batch.router(sandbox, api=API, max_parts=100)]


def _page_size(value: int | None) -> int:
    if value is None:
        return 100
    if value < 1 or value > MAX_RESULTS:
        raise google_error(400, "invalidArgument", f"Invalid maxResults: {value}", location="maxResults")
    return value


def _offset(page_token: str | None) -> int:
    if not page_token:
        return 0
    try:
        return int(page_token)
    except ValueError:
        raise google_error(400, "invalidArgument", "Invalid pageToken", location="pageToken") from None


def _message_json(message: StoredMessage, fmt: str, metadata_headers: list[str]) -> dict:
    body = {"id": message.id, "threadId": message.thread_id, "labelIds": list(message.label_ids),
            "historyId": str(message.history_id), "internalDate": str(message.internal_date_ms),
            "sizeEstimate": len(message.raw)}
    if fmt == "minimal":
        return body
    if fmt == "raw":
        return {**body, "raw": base64.urlsafe_b64encode(message.raw).decode()}
    parsed = email.message_from_bytes(message.raw, policy=policy.compat32)
    wanted = {h.lower() for h in metadata_headers}
    headers = [{"name": k, "value": str(v)} for k, v in parsed.items()
               if fmt == "full" or not wanted or k.lower() in wanted]
    payload = {"mimeType": parsed.get_content_type(), "headers": headers}
    if fmt == "full" and not parsed.is_multipart():
        data = parsed.get_payload(decode=True) or b""
        payload["body"] = {"size": len(data), "data": base64.urlsafe_b64encode(data).decode()}
    return {**body, "snippet": "", "payload": payload}


def api_router(sandbox, store: GmailStore) -> APIRouter:
    api = APIRouter(prefix=f"/{API}/users/{{user_id}}", tags=["gmail"])

    def mailbox(request: Request, user_id: str) -> Mailbox:
        account = google_account(sandbox, request)
        if user_id != "me" and user_id.lower() != account.email.lower():
            raise google_error(403, "forbidden", "Delegation denied for " + account.email)
        return store.mailbox(account.id, account.email)

    def message_of(box: Mailbox, message_id: str) -> StoredMessage:
        message = box.messages.get(message_id)
        if message is None:
            raise google_error(404, "notFound", "Requested entity was not found.")
        return message

    @api.get("/profile")
    def profile(request: Request, user_id: str) -> dict:
        box = mailbox(request, user_id)
        threads = {m.thread_id for m in box.messages.values()}
        return {"emailAddress": box.email, "messagesTotal": len(box.messages), "threadsTotal": len(threads),
                "historyId": str(box.history_id)}

    @api.get("/messages")
    def list_messages(request: Request, user_id: str, maxResults: int | None = None,
                      pageToken: str | None = None) -> dict:
        box, size, start = mailbox(request, user_id), _page_size(maxResults), _offset(pageToken)
        with store.lock:
            newest_first = list(reversed(box.messages.values()))
        page = newest_first[start:start + size]
        body: dict = {"messages": [{"id": m.id, "threadId": m.thread_id} for m in page],
                      "resultSizeEstimate": len(newest_first)}
        if start + size < len(newest_first):
            body["nextPageToken"] = str(start + size)
        if not page:
            body.pop("messages")
        return body

    @api.get("/messages/{message_id}")
    def get_message(request: Request, user_id: str, message_id: str, format: str = "full",
                    metadataHeaders: Annotated[list[str] | None, Query()] = None) -> dict:
        if format not in ("minimal", "full", "raw", "metadata"):
            raise google_error(400, "invalidArgument", f"Invalid format: {format}", location="format")
        return _message_json(message_of(mailbox(request, user_id), message_id), format, metadataHeaders or [])

    @api.get("/threads/{thread_id}")
    def get_thread(request: Request, user_id: str, thread_id: str, format: str = "full",
                   metadataHeaders: Annotated[list[str] | None, Query()] = None) -> dict:
        box = mailbox(request, user_id)
        messages = [m for m in box.messages.values() if m.thread_id == thread_id]
        if not messages:
            raise google_error(404, "notFound", "Requested entity was not found.")
        return {"id": thread_id, "historyId": str(max(m.history_id for m in messages)),
                "messages": [_message_json(m, format, metadataHeaders or []) for m in messages]}

    @api.get("/history")
    def list_history(request: Request, user_id: str, startHistoryId: int | None = None,
                     maxResults: int | None = None, pageToken: str | None = None,
                     historyTypes: Annotated[list[str] | None, Query()] = None) -> dict:
        box, size, start = mailbox(request, user_id), _page_size(maxResults), _offset(pageToken)
        if startHistoryId is None:
            raise google_error(400, "invalidArgument", "Missing startHistoryId", location="startHistoryId")
        if startHistoryId < box.oldest_history_id:
            raise google_error(404, "notFound", "Requested entity was not found.")
        with store.lock:
            records = [(h, m) for h, m in box.history if h > startHistoryId]
            current = box.history_id
        page = records[start:start + size]
        wants_added = not historyTypes or "messageAdded" in historyTypes
        history = []
        for history_id, message_id in page:
            message = box.messages[message_id]
            ref = {"id": message.id, "threadId": message.thread_id}
            record = {"id": str(history_id), "messages": [ref]}
            if wants_added:
                record["messagesAdded"] = [{"message": {**ref, "labelIds": list(message.label_ids)}}]
            history.append(record)
        body: dict = {"historyId": str(current)}
        if history:
            body["history"] = history
        if start + size < len(records):
            body["nextPageToken"] = str(start + size)
        return body

    @api.post("/watch")
    async def watch(request: Request, user_id: str) -> dict:
        box = mailbox(request, user_id)
        body = await request.json()
        topic = body.get("topicName") if isinstance(body, dict) else None
        if not topic or not str(topic).startswith("projects/") or "/topics/" not in topic:
            raise google_error(400, "invalidArgument", "Invalid topicName", location="topicName")
        with store.lock:
            box.watch = Watch(topic, int(time.time() * 1000) + WATCH_TTL_MS)
            return {"historyId": str(box.history_id), "expiration": str(box.watch.expiration_ms)}

    @api.post("/stop", status_code=204)
    def stop(request: Request, user_id: str) -> Response:
        box = mailbox(request, user_id)
        with store.lock:
            box.watch = None
        return Response(status_code=204)

    return api
