"""The bus contract: strict models, versioned, keyed for ordering, and their committed JSON Schemas."""
import datetime as dt

import pytest
from pydantic import ValidationError

from schemas import (
    AttachEmail, CrmCommand, CrmModule, IntegrationConfig, Pop3Mailbox, ProviderNotification, SyncJob, UpsertRecord,
)
from schemas.generate import SCHEMA_DIR, schema_files
from tests.support.factories import crm_change

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)


def test_committed_json_schemas_match_the_models():
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    generated = schema_files()
    assert set(committed) == set(generated), "run `make schemas` and commit schemas/json/"
    for name, content in generated.items():
        assert committed[name] == content, f"{name} drifted from its model: run `make schemas`"


def test_crm_change_round_trips_and_is_keyed_by_record():
    change = crm_change("org1", record_id="r1")
    assert type(change).from_bytes(change.to_bytes()) == change
    assert change.key == "org1:Events:r1"
    assert change.schema_version == 1


@pytest.mark.parametrize("field,value", [
    ("module", "Widgets"), ("op", "renamed"), ("source", "fax"), ("org_id", "a:b"), ("org_id", ""),
    ("modified_at", "2026-11-23T09:00:00"),
])
def test_crm_change_refuses_bad_values_naming_the_field(field, value):
    data = crm_change().model_dump(mode="json") | {field: value}
    with pytest.raises(ValidationError) as caught:
        type(crm_change()).model_validate(data)
    assert caught.value.errors()[0]["loc"][0] == field


def test_unknown_fields_are_refused_rather_than_silently_lost():
    data = crm_change().model_dump(mode="json") | {"colour": "red"}
    with pytest.raises(ValidationError, match="colour"):
        type(crm_change()).model_validate(data)


def test_command_action_is_chosen_by_kind():
    command = CrmCommand.model_validate({
        "org_id": "o", "idempotency_key": "k", "issued_by": "mail", "issued_at": NOW.isoformat(),
        "action": {"kind": "attach_email", "module": "Leads", "record_id": "r", "message_id": "<m@x>",
                   "thread_id": "t", "from_address": "a@b.c", "visibility": "private", "owner_id": "u",
                   "mailbox": "a@b.c"},
    })
    assert isinstance(command.action, AttachEmail)
    assert command.correlation_id, "every command carries a correlation id"
    with pytest.raises(ValidationError):
        CrmCommand.model_validate(command.model_dump(mode="json") | {"action": {"kind": "teleport"}})


def test_attach_email_only_goes_to_leads_contacts_and_deals():
    with pytest.raises(ValidationError):
        AttachEmail(module=CrmModule.ACCOUNTS, record_id="r", message_id="m", thread_id="t", from_address="a",
                    visibility="shared", owner_id="u", mailbox="m")


def test_integration_config_defaults_are_the_documented_caps_and_keys_are_per_user():
    config = IntegrationConfig(org_id="o", user_id="u", integration="google_calendar", updated_at=NOW)
    assert (config.caps.initial_window_days, config.caps.initial_max_items, config.caps.incremental_page_cap) == (90, 5000, 500)
    assert config.key == "o:u:google_calendar"
    assert not config.enabled


def test_mail_configuration_needs_a_mailbox_and_others_take_none():
    with pytest.raises(ValidationError, match="needs a mailbox"):
        IntegrationConfig(org_id="o", user_id="u", integration="mail", updated_at=NOW)
    mailbox = Pop3Mailbox(host="h", username="u", password_encrypted="x")
    with pytest.raises(ValidationError, match="takes no mailbox"):
        IntegrationConfig(org_id="o", user_id="u", integration="google_drive", mailbox=mailbox, updated_at=NOW)


def test_notifications_and_jobs_are_keyed_by_org_user_integration():
    n = ProviderNotification(provider="gmail", kind="change", org_id="o", user_id="u", integration="mail",
                             delivery_id="d", received_at=NOW)
    job = SyncJob(job_id="j", org_id="o", user_id="u", integration="mail", kind="full", requested_at=NOW)
    assert n.key == job.key == "o:u:mail"


def test_upsert_without_record_id_creates():
    assert UpsertRecord(module="Contacts", owner_id="u", fields={"Email": "a@b.c"}).record_id is None
