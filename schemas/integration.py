"""Per org, user and integration configuration, kept on the compacted `integration.configs` topic."""
from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.base import Identifier, Message, user_key


class Integration(StrEnum):
    GOOGLE_CALENDAR = "google_calendar"
    MICROSOFT_CALENDAR = "microsoft_calendar"
    MICROSOFT_CONTACTS = "microsoft_contacts"
    GOOGLE_DRIVE = "google_drive"
    MAIL = "mail"


class Direction(StrEnum):
    TWO_WAY = "two_way"
    CRM_TO_PROVIDER = "crm_to_provider"
    PROVIDER_TO_CRM = "provider_to_crm"


class Caps(BaseModel):
    """How much a sync may take at once; defaults are the product's documented ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_window_days: int = Field(90, ge=1, le=3650)
    initial_max_items: int = Field(5_000, ge=1, le=100_000)
    incremental_page_cap: int = Field(500, ge=1, le=10_000)


class Pop3Mailbox(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pop3"] = "pop3"
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(995, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = Field(min_length=1, max_length=320)
    password_encrypted: str = Field(
        min_length=1, description="Fernet token: the admin API encrypts the password before publishing"
    )
    delete_after_fetch: bool = False
    poll_interval_s: int = Field(60, ge=5, le=86_400)


class GmailMailbox(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["gmail"] = "gmail"
    address: str = Field(min_length=3, max_length=320)


class IntegrationConfig(Message):
    """What one user wants of one integration. A tombstone (null value) on the topic removes it."""

    org_id: Identifier
    user_id: Identifier
    integration: Integration
    enabled: bool = False
    direction: Direction = Direction.TWO_WAY
    target_id: str | None = Field(
        None, max_length=1024, description="calendar id (Google, Microsoft) or Drive folder id"
    )
    guests_as_contacts: bool = False
    field_mapping: dict[str, str] = Field(default_factory=dict, description="CRM field -> provider field")
    mailbox: Pop3Mailbox | GmailMailbox | None = Field(None, discriminator="kind")
    mailbox_mode: Literal["private", "shared"] = "private"
    caps: Caps = Field(default_factory=Caps)
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _mail_needs_a_mailbox(self):
        if self.integration == Integration.MAIL and self.mailbox is None:
            raise ValueError("integration 'mail' needs a mailbox (kind gmail or pop3)")
        if self.integration != Integration.MAIL and self.mailbox is not None:
            raise ValueError(f"integration '{self.integration.value}' takes no mailbox")
        return self

    @property
    def key(self) -> str:
        return user_key(self.org_id, self.user_id, self.integration.value)
