"""Whether an integration can authenticate, in the two places people look: Redis and Prometheus.

A worker whose adapter raises AuthFailed (a revoked or expired grant) calls `mark_auth_failed`: the
status shows in `crmsync status` and the admin API with the provider's reason, and the gauge
`crmsync_integration_auth_failed` alerts. Nothing retries a revoked grant; only the user can fix it,
by connecting again, which calls `mark_ok` (ingest's OAuth callback). A worker that succeeds after a
failure calls `mark_ok` too, so that its own process's gauge goes back to 0.
"""
from __future__ import annotations

import time

import redis.asyncio as aioredis

from services.common.metrics import INTEGRATION_STATUS
from services.common.state import IntegrationStatus, StatusStore

AUTH_FAILED = "auth_failed"
OK = "ok"


async def mark_auth_failed(redis: aioredis.Redis, org_id: str, user_id: str, integration: str, reason: str) -> None:
    """The grant no longer works; `reason` is what the provider said (e.g. invalid_grant, AADSTS50173)."""
    await StatusStore(redis).set(org_id, user_id, integration, IntegrationStatus(AUTH_FAILED, reason, time.time()))
    INTEGRATION_STATUS.labels(org_id, user_id, integration).set(1)


async def mark_ok(redis: aioredis.Redis, org_id: str, user_id: str, integration: str) -> None:
    await StatusStore(redis).set(org_id, user_id, integration, IntegrationStatus(OK, "", time.time()))
    INTEGRATION_STATUS.labels(org_id, user_id, integration).set(0)
