"""The reference CRM's own settings (prefix CRMSYNC_CRM_); broker, Redis and the HMAC secret are the
common ones, so the CRM signs with the very secret ingest verifies with.
"""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CrmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_CRM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8070, ge=0, le=65535, description="the HTTP API; 0 picks a free port")
    ingest_url: str = Field("http://127.0.0.1:8080", description="where changes are posted, signed")
    publish_batch_max_changes: int = Field(500, ge=1, le=500, description="ingest takes at most 500 per request")
    publish_batch_max_bytes: int = Field(
        900_000, ge=10_000, description="kept under ingest's 1 MiB body limit"
    )
    publish_linger_ms: int = Field(
        20, ge=0, le=1000, description="after a batch that did not fill up, how long the publisher lets changes "
        "gather before it reads again: a burst goes in a few large posts, not hundreds of small ones; a lone "
        "change after a quiet spell is still posted at once"
    )
    command_linger_ms: int = Field(
        10, ge=0, le=1000, description="after a batch of several commands that did not fill up, how long the "
        "consumer lets commands gather before it applies the next: a burst goes in batches of tens, each a "
        "read and a commit, not in hundreds of batches of a few; a lone command after a quiet spell is applied "
        "at once"
    )
    publisher_lease_s: float = Field(
        10.0, gt=0, description="how long a crashed process's hold on the outbox delays another's"
    )
    applied_ttl_s: int = Field(
        30 * 86_400, ge=60, description="how long an applied idempotency key is remembered (> topic retention)"
    )
