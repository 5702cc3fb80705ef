"""Gmail v1 through google-api-python-client: what mail_fetch needs, behind a small synchronous port.

The client is built from the bundled discovery document with `api_endpoint` set to the API host's
root (the discovery paths already start with `gmail/v1/`). Batches go to `<root>batch/gmail/v1`,
built by hand because the client's default batch URI is the discovery rootUrl. Errors come out as
GmailAuthError (invalid_grant, 401: a person must reconnect), HistoryExpired (404 on history.list:
full sync) and TransientError (429, 5xx, network). Calls are blocking: run them in a thread.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from services.common.retry import PermanentError, TransientError

BATCH_SIZE = 50  # Gmail allows 100 calls a batch and advises no more than 50


class GmailAuthError(Exception):
    """The grant was refused (invalid_grant) or the token is not accepted."""


class HistoryExpired(Exception):
    """history.list answered 404: the start id is too old; a full sync is due."""


@dataclass(frozen=True)
class GmailMessage:
    id: str
    thread_id: str
    raw: bytes
    internal_date_ms: int | None


class GmailClient:
    def __init__(self, credentials: Credentials, api_root: str, ca_certs: str | None = None):
        root = api_root.rstrip("/") + "/"
        self.http = AuthorizedHttp(credentials, http=httplib2.Http(timeout=30, ca_certs=ca_certs))
        self.service = build("gmail", "v1", http=self.http, static_discovery=True, cache_discovery=False,
                             client_options={"api_endpoint": root})
        self.batch_uri = f"{root}batch/gmail/v1"
        # Each users() or messages() call builds a new Resource with every method of the discovery
        # document: built once here, not once per message (that was most of a first sync's CPU).
        self.users = self.service.users()
        self.messages = self.users.messages()

    def profile_history_id(self) -> int:
        return int(self._run(self.users.getProfile(userId="me"))["historyId"])

    def list_message_ids(self, page_token: str | None = None, page_size: int = 500) -> tuple[list[str], str | None]:
        answer = self._run(self.messages.list(userId="me", maxResults=page_size, pageToken=page_token))
        return [m["id"] for m in answer.get("messages", [])], answer.get("nextPageToken")

    def added_since(self, start_history_id: int, page_token: str | None = None) -> tuple[list[str], str | None, int]:
        """Ids of messages added after the start id (one page), the next page, and the current history id."""
        request = self.users.history().list(userId="me", startHistoryId=start_history_id, maxResults=500,
                                                       historyTypes="messageAdded", pageToken=page_token)
        try:
            answer = self._run(request)
        except GmailApiError as exc:
            if exc.status == 404:
                raise HistoryExpired(str(exc)) from exc
            raise
        ids = [added["message"]["id"] for record in answer.get("history", [])
               for added in record.get("messagesAdded", [])]
        return ids, answer.get("nextPageToken"), int(answer["historyId"])

    def get_raw(self, ids: list[str]) -> list[GmailMessage]:
        """messages.get format=raw for many ids, in batches; messages deleted meanwhile are skipped."""
        found: dict[str, GmailMessage] = {}
        failures: list[Exception] = []

        def collect(request_id, response, exception):
            if exception is not None:
                if isinstance(exception, HttpError) and exception.resp.status == 404:
                    return
                failures.append(exception)
                return
            padded = response["raw"] + "=" * (-len(response["raw"]) % 4)
            found[response["id"]] = GmailMessage(response["id"], response["threadId"],
                                                 base64.urlsafe_b64decode(padded),
                                                 int(response["internalDate"]) if "internalDate" in response else None)

        for start in range(0, len(ids), BATCH_SIZE):
            batch = BatchHttpRequest(callback=collect, batch_uri=self.batch_uri)
            for message_id in ids[start:start + BATCH_SIZE]:
                batch.add(self.messages.get(userId="me", id=message_id, format="raw"))
            self._guard(lambda b=batch: b.execute(http=self.http))
            if failures:
                raise _translate(failures[0])
        return [found[i] for i in ids if i in found]

    def watch(self, topic: str) -> tuple[int, int]:
        answer = self._run(self.users.watch(userId="me", body={"topicName": topic}))
        return int(answer["historyId"]), int(answer["expiration"])

    def stop(self) -> None:
        self._run(self.users.stop(userId="me"))

    # --- errors ---------------------------------------------------------------------------------
    def _run(self, request):
        return self._guard(lambda: request.execute(http=self.http))

    @staticmethod
    def _guard(call):
        try:
            return call()
        except (HttpError, RefreshError, TransportError, OSError, httplib2.HttpLib2Error) as exc:
            raise _translate(exc) from exc


class GmailApiError(PermanentError):
    def __init__(self, status: int, message: str):
        super().__init__(f"Gmail API {status}: {message}")
        self.status = status


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, RefreshError):
        return GmailAuthError(f"Google refused the grant: {exc}")
    if isinstance(exc, HttpError):
        status = exc.resp.status
        try:
            message = json.loads(exc.content)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        if status == 401:
            return GmailAuthError(f"Gmail refused the access token: {message}")
        if status == 429 or status >= 500 or (status == 403 and "rate" in message.lower()):
            return TransientError(f"Gmail {status}: {message}", _retry_after(exc))
        return GmailApiError(status, message)
    return TransientError(f"Gmail unreachable: {exc}")


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after")
    return float(value) if value and value.isdigit() else None
