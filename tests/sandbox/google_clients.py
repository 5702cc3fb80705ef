"""What the Google sandbox tests share: a signed-in user driving the real client, and a webhook receiver."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from sandbox.server import RunningSandbox


@dataclass
class GoogleUser:
    """A sandbox account, its refreshable credentials and a Calendar v3 client built on them."""

    account: dict
    credentials: Credentials
    calendar: object

    @property
    def id(self) -> str:
        return self.account["id"]


def credentials_for(sandbox: RunningSandbox, account: dict, refresh_token: str | None = None) -> Credentials:
    """Credentials with no access token yet: the client's first call refreshes for real at /token."""
    return Credentials(
        token=None,
        refresh_token=refresh_token or account["refresh_token"],
        token_uri=f"{sandbox.http_url}/token",
        client_id=account["client_id"],
        client_secret=account["client_secret"],
    )


def calendar_client(sandbox: RunningSandbox, credentials: Credentials):
    return build(
        "calendar", "v3", credentials=credentials, static_discovery=True, cache_discovery=False,
        client_options={"api_endpoint": f"{sandbox.http_url}/calendar/v3/"},
    )


def new_user(sandbox: RunningSandbox, email: str) -> GoogleUser:
    account = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json={"provider": "google", "email": email})
    account.raise_for_status()
    credentials = credentials_for(sandbox, account.json())
    return GoogleUser(account.json(), credentials, calendar_client(sandbox, credentials))


@pytest.fixture
def ann(sandbox) -> GoogleUser:
    return new_user(sandbox, "ann@example.com")


def timed(summary: str = "Meeting", start: str = "2030-01-07T10:00:00", end: str = "2030-01-07T11:00:00",
          zone: str = "Europe/Paris", **fields) -> dict:
    return {"summary": summary, "start": {"dateTime": start, "timeZone": zone},
            "end": {"dateTime": end, "timeZone": zone}, **fields}


def reason_of(error: HttpError) -> str:
    return error.error_details[0]["reason"] if error.error_details else ""


@dataclass
class Notification:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A plain http server on a free loopback port that records each POST and answers `status`."""

    status: int = 200
    received: list[Notification] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/google/calendar"

    def for_channel(self, channel_id: str) -> list[Notification]:
        return [n for n in list(self.received) if n.headers.get("X-Goog-Channel-ID") == channel_id]

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(Notification(dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    running = WebhookReceiver().start()
    yield running
    running.stop()
