"""What the Drive sandbox tests share: a user driving the real Drive v3 client.

The client is pointed at the sandbox's https base URL: google-api-python-client builds media upload URLs
from the discovery document's rootUrl and only swaps in the host and port of `api_endpoint`
(`_fix_up_media_path_base_url`), so uploads keep the https scheme. The sandbox serves the same app over
https with the project's test CA, which the client's httplib2 trusts (and nothing else).
"""
from __future__ import annotations

from dataclasses import dataclass

import httplib2
import httpx
import pytest
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build

from sandbox.server import RunningSandbox
from tests.sandbox.google_clients import credentials_for

FOLDER = "application/vnd.google-apps.folder"


@dataclass
class DriveUser:
    account: dict
    drive: object

    @property
    def id(self) -> str:
        return self.account["id"]


def drive_client(sandbox: RunningSandbox, account: dict):
    transport = httplib2.Http(ca_certs=str(sandbox.tls.ca_cert))
    # As googleapiclient.http.build_http does: a resumable upload's 308 is not a redirect.
    transport.redirect_codes = transport.redirect_codes - {308}
    http = AuthorizedHttp(credentials_for(sandbox, account), http=transport)
    return build("drive", "v3", http=http, static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": f"{sandbox.https_url}/drive/v3/"})


def new_drive_user(sandbox: RunningSandbox, email: str, client_id: str | None = None) -> DriveUser:
    body = {"provider": "google", "email": email, **({"client_id": client_id} if client_id else {})}
    account = httpx.post(f"{sandbox.http_url}/_sandbox/accounts", json=body)
    account.raise_for_status()
    return DriveUser(account.json(), drive_client(sandbox, account.json()))


@pytest.fixture
def dora(sandbox) -> DriveUser:
    return new_drive_user(sandbox, "dora@example.com")


def folder(user: DriveUser, name: str, parent: str | None = None, **fields) -> dict:
    body = {"name": name, "mimeType": FOLDER, **({"parents": [parent]} if parent else {}), **fields}
    return user.drive.files().create(body=body, fields="id,name,parents,mimeType,appProperties").execute()
