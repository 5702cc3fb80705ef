"""A Gmail mailbox connected through ingest's real OAuth flow (the test plays the browser, as in
test_oauth_connect), then fetched by mail_fetch with the grant that flow stored.

The admin configures the mailbox before the user has consented, as happens in practice: the worker shows
auth_failed ("connect the mailbox again") until the user connects, and then fetches by itself.
"""
import httpx
import pytest

from schemas import CrmModule
from tests.fixtures.net import wait_for
from tests.integration.test_mail_support import MailWorld, mail
from tests.integration.test_oauth_connect import (  # noqa: F401 - fixtures of the connect flow
    apps,
    authorization_url,
    browser,
    new_email,
    oauth_ingest,
    sandbox_account,
)

pytestmark = pytest.mark.integration


def test_a_gmail_mailbox_connected_through_oauth_is_fetched(oauth_ingest, sandbox_server, apps, browser,
                                                            kafka_bootstrap, start_service):
    world = MailWorld(oauth_ingest.settings, oauth_ingest, kafka_bootstrap)
    world.crm(world.record(CrmModule.CONTACTS, "C1", Email="carl@contact.example"))
    email = new_email("ann")
    sandbox_account(sandbox_server, "google", email)
    httpx.post(f"{sandbox_server.http_url}/_sandbox/gmail/{email}/messages",
               content=mail("carl@contact.example", email, "Before connecting")).raise_for_status()
    worker = start_service(
        "services.mail_fetch",
        CRMSYNC_GOOGLE_API_BASE_URL=sandbox_server.http_url,
        CRMSYNC_GOOGLE_TOKEN_URL=f"{sandbox_server.https_url}/token",
        CRMSYNC_GOOGLE_CLIENT_ID=apps["google"]["client_id"],
        CRMSYNC_GOOGLE_CLIENT_SECRET=apps["google"]["client_secret"],
        CRMSYNC_PROVIDER_CA_BUNDLE=str(sandbox_server.tls.ca_cert),
    )
    world.wait_indexed("carl@contact.example", "C1")
    world.configure("ann", {"kind": "gmail", "address": email})
    wait_for(lambda: (world.status("ann") or {}).get("state") == "auth_failed", 60, what="auth_failed before consent")
    assert "connect the mailbox" in world.status("ann")["reason"]

    answer = browser.sign_in(authorization_url(oauth_ingest, world.org, "ann", "mail", expected_email=email))
    assert answer.status_code == 200, answer.text
    [command] = world.wait_commands(1, worker=worker)
    assert (command.action.subject, command.action.mailbox, command.action.owner_id) == (
        "Before connecting", email, "ann")
    wait_for(lambda: (world.status("ann") or {}).get("state") == "ok", 30, what="ok status")

