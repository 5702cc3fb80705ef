"""Work a worker schedules for itself: full and incremental syncs, channel renewals."""
from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas.base import Identifier, Message, user_key
from schemas.integration import Integration


class SyncJobKind(StrEnum):
    FULL = "full"  # first sync, or a lost or expired sync token
    INCREMENTAL = "incremental"
    RENEW_WATCH = "renew_watch"  # a channel or subscription about to expire
    DISABLE = "disable"  # the configuration was disabled or deleted
    PREVIEW = "preview"  # count what enabling would do, write nothing


class SyncJob(Message):
    job_id: str = Field(min_length=1, max_length=128)
    org_id: Identifier
    user_id: Identifier
    integration: Integration
    kind: SyncJobKind
    reason: str = Field("", max_length=512)
    requested_at: AwareDatetime
    not_before: AwareDatetime | None = Field(None, description="do not run before this time")

    @property
    def key(self) -> str:
        return user_key(self.org_id, self.user_id, self.integration.value)
