"""The admin API: integration configurations on the compacted topic, secrets encrypted, never echoed."""
import httpx
import pytest

from schemas import IntegrationConfig
from services.common.secrets import SecretBox
from tests.fixtures.topics import read_topic
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


def admin(settings) -> dict:
    return {"Authorization": f"Bearer {settings.admin_token}"}


def config_url(ingest, org, user="u1", integration="google_calendar") -> str:
    return f"{ingest.url}/v1/orgs/{org}/users/{user}/integrations/{integration}"


def configs_on_topic(kafka_bootstrap, key: str) -> list:
    return [r for r in read_topic(kafka_bootstrap, "integration.configs") if r.key.decode() == key]


def test_put_get_delete_round_trip_through_the_compacted_topic(ingest, settings, kafka_bootstrap):
    org = unique_org()
    url = config_url(ingest, org)
    body = {"enabled": True, "direction": "crm_to_provider", "target_id": "primary", "guests_as_contacts": True}
    r = httpx.put(url, json=body, headers=admin(settings))
    assert r.status_code == 200, r.text
    assert r.json()["direction"] == "crm_to_provider"
    assert httpx.get(url, headers=admin(settings)).json()["target_id"] == "primary"
    [record] = configs_on_topic(kafka_bootstrap, f"{org}:u1:google_calendar")
    config = IntegrationConfig.from_bytes(record.value)
    assert config.enabled and config.guests_as_contacts and config.caps.initial_max_items == 5000

    assert httpx.delete(url, headers=admin(settings)).status_code == 204
    records = configs_on_topic(kafka_bootstrap, f"{org}:u1:google_calendar")
    assert records[-1].value is None, "a delete is a tombstone"
    r = httpx.get(url, headers=admin(settings))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert httpx.delete(url, headers=admin(settings)).status_code == 404


def test_admin_api_needs_the_admin_token(ingest, settings):
    url = config_url(ingest, unique_org())
    assert httpx.put(url, json={}).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_unknown_integration_and_bad_fields_are_422_naming_them(ingest, settings):
    org = unique_org()
    r = httpx.put(config_url(ingest, org, integration="fax"), json={}, headers=admin(settings))
    assert r.status_code == 422
    assert any(e["field"] == "path.integration" for e in r.json()["errors"])
    r = httpx.put(config_url(ingest, org), json={"direction": "sideways"}, headers=admin(settings))
    assert r.status_code == 422 and "body.direction" in r.json()["detail"]
    r = httpx.put(config_url(ingest, org), json={"caps": {"initial_window_days": 0}}, headers=admin(settings))
    assert r.status_code == 422 and "body.caps.initial_window_days" in r.json()["detail"]
    r = httpx.put(config_url(ingest, "bad:org"), json={}, headers=admin(settings))
    assert r.status_code == 422


def test_pop3_password_is_encrypted_on_the_topic_and_never_answered(ingest, settings, kafka_bootstrap):
    org = unique_org()
    url = config_url(ingest, org, integration="mail")
    mailbox = {"kind": "pop3", "host": "127.0.0.1", "port": 1110, "security": "none", "username": "ann",
               "password": "s3cret-pw"}
    r = httpx.put(url, json={"enabled": True, "mailbox": mailbox, "mailbox_mode": "shared"}, headers=admin(settings))
    assert r.status_code == 200, r.text
    assert "s3cret-pw" not in r.text and r.json()["mailbox"]["password_set"] is True
    [record] = configs_on_topic(kafka_bootstrap, f"{org}:u1:mail")
    assert b"s3cret-pw" not in record.value
    stored = IntegrationConfig.from_bytes(record.value)
    assert SecretBox(settings.fernet_key_list).decrypt(stored.mailbox.password_encrypted) == "s3cret-pw"

    # An update without a password keeps the stored one.
    r = httpx.put(url, json={"enabled": False, "mailbox": {**mailbox, "password": None}}, headers=admin(settings))
    assert r.status_code == 200
    latest = IntegrationConfig.from_bytes(configs_on_topic(kafka_bootstrap, f"{org}:u1:mail")[-1].value)
    assert SecretBox(settings.fernet_key_list).decrypt(latest.mailbox.password_encrypted) == "s3cret-pw"


def test_new_pop3_mailbox_without_password_and_mail_without_mailbox_are_refused(ingest, settings, kafka_bootstrap):
    org = unique_org()
    url = config_url(ingest, org, integration="mail")
    mailbox = {"kind": "pop3", "host": "h", "username": "ann"}
    r = httpx.put(url, json={"mailbox": mailbox}, headers=admin(settings))
    assert r.status_code == 422 and "mailbox.password" in r.json()["detail"]
    r = httpx.put(url, json={"enabled": True}, headers=admin(settings))
    assert r.status_code == 422 and "needs a mailbox" in r.text
    r = httpx.put(config_url(ingest, org), json={"mailbox": {"kind": "gmail", "address": "a@b.c"}},
                  headers=admin(settings))
    assert r.status_code == 422 and "takes no mailbox" in r.text
    assert configs_on_topic(kafka_bootstrap, f"{org}:u1:mail") == []
