"""Helpers for the Microsoft sandbox tests: users with credentials, Graph clients, MSAL apps, a webhook receiver."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import requests

from tests.fixtures.net import free_port

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def new_user(sandbox, email: str, tenant_id: str | None = None) -> dict:
    """A Microsoft sandbox user with its app credentials and a delegated access token."""
    body = {"provider": "microsoft", "email": email, "display_name": email.split("@")[0].title()}
    if tenant_id:
        body["tenant_id"] = tenant_id
    answer = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json=body)
    answer.raise_for_status()
    return answer.json()


def graph(sandbox, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return httpx.Client(base_url=f"{sandbox.http_url}/v1.0", headers=headers, timeout=30)


def msal_app(sandbox, user: dict, verify=None, **options) -> msal.ConfidentialClientApplication:
    """An MSAL app for the user's client, trusting the sandbox CA (or what `verify` says)."""
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE (set on many machines) override session.verify: ignore the environment.
    session.trust_env = False
    session.verify = str(sandbox.tls.ca_cert) if verify is None else verify
    session.headers["Connection"] = "close"  # no idle keep-alive left to hold the server's shutdown
    return msal.ConfidentialClientApplication(
        user["client_id"],
        client_credential=user["client_secret"],
        authority=f"{sandbox.https_url}/{user['tenant_id']}",
        http_client=session,
        instance_discovery=False,
        **options,
    )


def app_token(sandbox, user: dict) -> str:
    """An app-only token for the user's tenant, through MSAL's client credentials flow."""
    result = msal_app(sandbox, user).acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result, result
    return result["access_token"]


def calls(sandbox, fragment: str) -> int:
    """How many calls the sandbox counted on routes whose key contains `fragment`."""
    counted = httpx.get(f"{sandbox.http_url}/_sandbox/counters").json()["calls"]
    return sum(n for key, n in counted.items() if fragment in key)


def event_body(subject: str = "Demo", start: str = "2026-03-02T10:00:00", end: str = "2026-03-02T11:00:00", **extra) -> dict:
    return {
        "subject": subject,
        "body": {"contentType": "text", "content": f"about {subject}"},
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
        **extra,
    }


@dataclass
class Receiver:
    """A webhook endpoint on a free loopback port: answers the validation handshake as told, keeps posts."""

    handshake: str = "echo"  # echo | json | wrong | slow | error
    slow_s: float = 0.0
    refuse_first: int = 0  # posts to /notify answered 503 before the endpoint starts accepting
    stall_first_s: float = 0.0  # the first post to /notify is answered this late
    refused: int = 0
    received: list[dict] = field(default_factory=list)
    validations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                token = parse_qs(urlsplit(self.path).query).get("validationToken")
                if token:
                    receiver.validations.append(token[0])
                    receiver.answer_handshake(self, token[0])
                    return
                if urlsplit(self.path).path == "/notify" and receiver.stall_first_s:
                    stall, receiver.stall_first_s = receiver.stall_first_s, 0.0
                    time.sleep(stall)  # a slow endpoint, on purpose: Graph must give up waiting
                if urlsplit(self.path).path == "/notify" and receiver.refused < receiver.refuse_first:
                    receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.received.append({"path": urlsplit(self.path).path, "body": json.loads(raw or b"{}")})
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer_handshake(self, handler: BaseHTTPRequestHandler, token: str) -> None:
        if self.handshake == "slow":
            time.sleep(self.slow_s)  # the endpoint under test is slow on purpose
        status, kind, text = {
            "echo": (200, "text/plain", token),
            "slow": (200, "text/plain", token),
            "json": (200, "application/json", token),  # the right text, the wrong type
            "wrong": (200, "text/plain", "not the token"),
            "error": (500, "text/plain", "broken"),
        }[self.handshake]
        payload = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def notifications(self, path: str = "/notify") -> list[dict]:
        return [item for post in self.received if post["path"] == path for item in post["body"].get("value", [])]

    def changed_ids(self) -> list[str]:
        """The ids of the resources the change notifications received so far were about."""
        return [n["resourceData"]["id"] for n in self.notifications()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
