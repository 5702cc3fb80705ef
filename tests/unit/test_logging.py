"""Logs: JSON lines in production, each naming the org, user and integration the message is about."""
import asyncio
import io
import json

import structlog

from schemas import IntegrationConfig
from services.common.handling import InboundRecord, MessageHandler
from services.common.logging import configure_logging, get_logger
from services.common.retry import RetryPolicy
from services.common.settings import Settings


def test_production_logs_are_json_with_the_message_context():
    stream = io.StringIO()
    configure_logging(Settings(env="test", log_format="json"), "unit", stream=stream)

    async def handle(config, record):
        get_logger("t").info("syncing", step="pull")

    config = IntegrationConfig(org_id="o1", user_id="u1", integration="mail", updated_at="2026-11-23T00:00:00Z",
                               mailbox={"kind": "gmail", "address": "a@b.c"})
    handler = MessageHandler("w", IntegrationConfig, handle, None, RetryPolicy(1, 0, 0))
    asyncio.run(handler(InboundRecord("integration.configs", 1, 42, b"k", config.to_bytes())))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [entry for entry in lines if entry.get("event") == "syncing"]
    assert line["org_id"] == "o1" and line["user_id"] == "u1" and line["integration"] == "mail"
    assert (line["topic"], line["offset"], line["service"], line["level"]) == ("integration.configs", 42, "unit", "info")
    structlog.contextvars.clear_contextvars()


def test_production_settings_refuse_development_secrets():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="CRMSYNC_HMAC_SECRET, CRMSYNC_ADMIN_TOKEN, CRMSYNC_FERNET_KEYS"):
        Settings(env="production")
