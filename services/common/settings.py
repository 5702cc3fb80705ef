"""All settings of every service, from the environment (prefix CRMSYNC_), with documented defaults.

The defaults make `make run` work on one machine with no set-up. The secrets among them are
development values: with CRMSYNC_ENV=production the services refuse to start while one is in use.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_HMAC_SECRET = "crmsync-dev-hmac-secret"
DEV_ADMIN_TOKEN = "crmsync-dev-admin-token"
# A fixed Fernet key so that `make run` can read back what it encrypted after a restart. Never in production.
DEV_FERNET_KEY = "Y3Jtc3luYy1kZXYta2V5LW5vdC1mb3ItcHJvZHVjdGk="


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_", extra="ignore")

    env: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON in production, readable console otherwise"
    )

    # --- infrastructure: the standard variable names are honoured as well ---------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS")
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL", "CRMSYNC_REDIS_URL")
    )
    topic_partitions: int = Field(6, ge=1, le=1000, description="partitions of every keyed topic")
    topic_replication: int = Field(1, ge=1, le=5)

    # Consumer group timing. Group joins wait on these; short values make tests and restarts quick.
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 1_000
    consumer_max_poll_interval_ms: int = 300_000
    consumer_rebalance_timeout_ms: int = 10_000
    consumer_fetch_max_wait_ms: int = Field(
        100, ge=1, le=10_000, description="longest a fetch waits at the broker for new records; Tansu waits "
        "this long even when a record arrives, so on it this is the delay each hop between workers adds"
    )

    metrics_port: int = Field(0, ge=0, le=65535, description="workers serve /metrics here; 0: off")
    keyed_concurrency: int = Field(
        64, ge=1, le=1024, description="messages of different keys an agent handles at once, where its worker "
        "allows it (calendar_sync); one key's messages stay in order; up to 32 times as many wait unacknowledged "
        "behind a slow one (services/common/keyed.py)"
    )

    # --- ingest -------------------------------------------------------------------------------
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8080
    public_base_url: str = Field(
        "http://127.0.0.1:8080", description="where providers reach ingest's webhooks"
    )
    hmac_secret: str = DEV_HMAC_SECRET
    signature_tolerance_s: int = 300
    admin_token: str = DEV_ADMIN_TOKEN
    max_body_bytes: int = 1024 * 1024
    gmail_push_token: str = Field("crmsync-dev-gmail-push-token", description="?token= on the Pub/Sub push URL")
    webhook_dedupe_ttl_s: int = Field(86_400, description="how long a delivery id is remembered")
    oauth_state_ttl_s: int = Field(600, ge=60, le=3600, description="how long a connect link's state stays valid")

    # --- providers: the real hosts by default; the local stack and tests point them at the sandbox --------
    google_api_base_url: str = Field("https://www.googleapis.com", description="Calendar, Drive, Gmail APIs")
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"
    google_client_id: str = ""
    google_client_secret: str = ""
    microsoft_authority_base_url: str = Field("https://login.microsoftonline.com", description="+ /{tenant}")
    microsoft_graph_base_url: str = "https://graph.microsoft.com"
    microsoft_client_id: str = ""
    microsoft_client_secret: str = ""
    graph_calendar_horizon_days: int = Field(
        365, ge=1, le=3650, description="Outlook changes are tracked over [now - initial window, now + this]"
    )
    graph_subscription_max_minutes: int = Field(
        4230, ge=5, description="Graph subscription lifetime asked for (Outlook: 4,230 documented, 10,080 seen)"
    )
    microsoft_tenant: str = Field(
        "organizations", description="authority tenant users sign in through: organizations, common or a tenant id"
    )
    provider_ca_bundle: str | None = Field(None, description="CA file to trust for provider TLS (the sandbox CA)")

    # --- provider quotas: the shared token buckets (services/common/ratelimit.py) ---------------------
    google_quota_per_user: int = Field(600, ge=1, description="calls per user per window (Calendar: 600/min)")
    google_quota_window_s: float = Field(60.0, gt=0)
    graph_quota_per_mailbox: int = Field(10_000, ge=1, description="Graph Outlook calls per mailbox per window")
    graph_quota_window_s: float = Field(600.0, gt=0)
    rate_limit_max_wait_s: float = Field(60.0, gt=0, description="longest wait for tokens before giving up")

    # --- state --------------------------------------------------------------------------------
    fernet_keys: str = Field(
        DEV_FERNET_KEY, description="comma-separated Fernet keys; the first encrypts, all decrypt (rotation)"
    )

    # --- retries of transient failures inside a worker ------------------------------------------
    retry_max_attempts: int = Field(6, ge=1, le=50)
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 30.0

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self):
        if self.env == "production":
            dev = [
                name
                for name, value, default in (
                    ("CRMSYNC_HMAC_SECRET", self.hmac_secret, DEV_HMAC_SECRET),
                    ("CRMSYNC_ADMIN_TOKEN", self.admin_token, DEV_ADMIN_TOKEN),
                    ("CRMSYNC_FERNET_KEYS", self.fernet_keys, DEV_FERNET_KEY),
                )
                if value == default
            ]
            if dev:
                raise ValueError(f"development secrets in production: set {', '.join(dev)}")
        return self

    @property
    def fernet_key_list(self) -> list[str]:
        return [k.strip() for k in self.fernet_keys.split(",") if k.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
