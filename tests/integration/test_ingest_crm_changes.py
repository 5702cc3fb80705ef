"""POST /v1/crm/changes: what a CRM backend sees, and what lands on crm.changes (read back for real)."""
import json
import time

import httpx
import pytest

from schemas import CrmChange
from services.ingest.client import changes_body, signed_request
from services.ingest.signing import sign
from tests.fixtures.topics import read_topic
from tests.support.factories import crm_change, unique_org

pytestmark = pytest.mark.integration


def published(kafka_bootstrap, org_id: str) -> list[CrmChange]:
    records = read_topic(kafka_bootstrap, "crm.changes")
    changes = [CrmChange.from_bytes(r.value) for r in records]
    return [c for c in changes if c.org_id == org_id]


def post(ingest, settings, body: bytes, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{ingest.url}/v1/crm/changes", content=body,
                      headers=headers if headers is not None else signed_request(settings.hmac_secret, body))


def test_signed_batch_is_accepted_and_every_change_is_on_the_topic_keyed_by_record(ingest, settings, kafka_bootstrap):
    org = unique_org()
    changes = [crm_change(org, record_id=f"r{i}") for i in range(3)]
    r = post(ingest, settings, changes_body(changes))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 3}
    records = [r for r in read_topic(kafka_bootstrap, "crm.changes") if CrmChange.from_bytes(r.value).org_id == org]
    assert sorted(r.key.decode() for r in records) == [f"{org}:Events:r{i}" for i in range(3)]
    by_record = {c.record_id: c for c in map(CrmChange.from_bytes, (r.value for r in records))}
    assert [by_record[c.record_id] for c in changes] == changes


def test_missing_signature_is_401_and_publishes_nothing(ingest, settings, kafka_bootstrap):
    org = unique_org()
    r = post(ingest, settings, changes_body([crm_change(org)]), headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "X-Crmsync-Timestamp" in r.json()["detail"]
    assert published(kafka_bootstrap, org) == []


def test_signature_over_a_different_body_is_401(ingest, settings, kafka_bootstrap):
    org = unique_org()
    signed_for = changes_body([crm_change(org, record_id="a")])
    sent = changes_body([crm_change(org, record_id="b")])
    r = post(ingest, settings, sent, headers=signed_request(settings.hmac_secret, signed_for))
    assert r.status_code == 401
    assert r.json()["detail"] == "signature does not match the body"
    assert published(kafka_bootstrap, org) == []


def test_wrong_secret_is_401(ingest, settings, kafka_bootstrap):
    org = unique_org()
    body = changes_body([crm_change(org)])
    r = post(ingest, settings, body, headers=signed_request("not-the-secret", body))
    assert r.status_code == 401
    assert published(kafka_bootstrap, org) == []


def test_timestamp_replayed_after_301_seconds_is_401(ingest, settings, kafka_bootstrap):
    org = unique_org()
    body = changes_body([crm_change(org)])
    stale = int(time.time()) - 301
    r = post(ingest, settings, body, headers=signed_request(settings.hmac_secret, body, timestamp=stale))
    assert r.status_code == 401
    assert "300 s" in r.json()["detail"]
    assert published(kafka_bootstrap, org) == []


def test_body_over_one_mebibyte_is_413(ingest, settings):
    body = b'{"changes": [' + b" " * (1024 * 1024) + b"]}"
    r = post(ingest, settings, body)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


def test_body_that_is_not_json_is_400(ingest, settings):
    r = post(ingest, settings, b"changes=1")
    assert r.status_code == 400
    assert r.json()["type"].endswith("/not-json")


def test_unknown_module_is_422_naming_the_field_and_a_partly_invalid_batch_publishes_nothing(
    ingest, settings, kafka_bootstrap
):
    org = unique_org()
    good = crm_change(org).model_dump(mode="json")
    bad = dict(good, record_id="other", module="Widgets")
    body = json.dumps({"changes": [good, bad]}).encode()
    r = post(ingest, settings, body)
    assert r.status_code == 422
    problem = r.json()
    assert {"field": "changes.1.module"}.items() <= problem["errors"][0].items()
    assert "changes.1.module" in problem["detail"]
    assert published(kafka_bootstrap, org) == []


def test_batch_of_501_is_422_and_of_500_is_accepted(ingest, settings, kafka_bootstrap):
    org = unique_org()
    over = changes_body([crm_change(org, record_id=f"r{i}") for i in range(501)])
    r = post(ingest, settings, over)
    assert r.status_code == 422
    assert "at most 500" in r.json()["detail"]
    assert published(kafka_bootstrap, org) == []
    r = post(ingest, settings, changes_body([crm_change(org, record_id=f"r{i}") for i in range(500)]))
    assert r.status_code == 202
    assert len(published(kafka_bootstrap, org)) == 500


def test_empty_batch_and_naive_timestamp_are_422(ingest, settings):
    assert post(ingest, settings, b'{"changes": []}').status_code == 422
    change = crm_change().model_dump(mode="json")
    change["modified_at"] = "2026-11-23T09:00:00"
    r = post(ingest, settings, json.dumps({"changes": [change]}).encode())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "changes.0.modified_at"


def test_signature_helper_matches_the_documented_scheme(settings):
    import hashlib
    import hmac

    body = b'{"changes":[]}'
    expected = hmac.new(settings.hmac_secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(settings.hmac_secret, 1700000000, body) == f"sha256={expected}"


def test_health_readiness_metrics_and_docs(ingest):
    assert httpx.get(f"{ingest.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{ingest.url}/readyz").json() == {"broker": True, "redis": True}
    assert "crmsync_ingest_changes_accepted_total" in httpx.get(f"{ingest.url}/metrics").text
    assert httpx.get(f"{ingest.url}/docs").status_code == 200
    assert "/v1/crm/changes" in httpx.get(f"{ingest.url}/openapi.json").json()["paths"]
