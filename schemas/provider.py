"""Provider push notifications, verified by ingest and resolved to the user they concern."""
from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.base import Identifier, Message, user_key
from schemas.integration import Integration


class NotificationKind(StrEnum):
    SYNC = "sync"  # Google's first message on a new channel: nothing changed yet
    CHANGE = "change"  # something changed: pull incrementally
    LIFECYCLE = "lifecycle"  # Graph subscription lifecycle: reauthorize, re-create, resync


class ProviderNotification(Message):
    """A push from Google or Microsoft. It carries no data: workers pull with their sync token."""

    provider: Literal["google_calendar", "gmail", "google_drive", "microsoft_graph"]
    kind: NotificationKind
    org_id: Identifier
    user_id: Identifier
    integration: Integration
    delivery_id: str = Field(
        min_length=1,
        max_length=512,
        description="what makes one delivery unique (channel + message number, subscription + change)",
    )
    channel_id: str | None = Field(None, description="Google channel id or Graph subscription id")
    resource_id: str | None = None
    resource_state: str | None = Field(None, description="Google: sync, exists, not_exists")
    message_number: int | None = None
    change_type: str | None = Field(None, description="Graph: created, updated, deleted")
    item_id: str | None = Field(None, max_length=512, description="Graph: the changed item's id (resourceData.id)")
    item_etag: str | None = Field(None, max_length=512,
                                  description="Graph: the changed item's etag (resourceData @odata.etag)")
    lifecycle_event: Literal["reauthorizationRequired", "missed", "subscriptionRemoved"] | None = None
    history_id: int | None = Field(None, description="Gmail: the mailbox's history id at the push")
    received_at: AwareDatetime

    @property
    def key(self) -> str:
        return user_key(self.org_id, self.user_id, self.integration.value)
