"""Messages to and from the CRM: record changes in, writeback commands out."""
from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, EmailStr, Field

from schemas.base import Identifier, Message


class CrmModule(StrEnum):
    LEADS = "Leads"
    CONTACTS = "Contacts"
    ACCOUNTS = "Accounts"
    DEALS = "Deals"
    EVENTS = "Events"
    ATTACHMENTS = "Attachments"
    USERS = "Users"


class CrmOp(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class ChangeSource(StrEnum):
    """How a record changed: import and migration are bulk loads that integrations must not echo."""

    UI = "ui"
    API = "api"
    IMPORT = "import"
    MIGRATION = "migration"
    BULK_UPDATE = "bulk_update"
    INTEGRATION = "integration"


class CrmChange(Message):
    """One record created, updated or deleted in the CRM, as the CRM backend reports it."""

    org_id: Identifier
    module: CrmModule
    record_id: Identifier
    op: CrmOp
    owner_id: Identifier
    source: ChangeSource
    modified_at: AwareDatetime
    fields: dict[str, Any] = Field(default_factory=dict, description="the record's fields after the change")
    correlation_id: str | None = Field(
        None, max_length=128, description="set by the CRM when the change was caused by one of our commands"
    )

    @property
    def key(self) -> str:
        return f"{self.org_id}:{self.module.value}:{self.record_id}"


# --- writeback commands -------------------------------------------------------------------------


class UpsertRecord(Message):
    kind: Literal["upsert_record"] = "upsert_record"
    module: CrmModule
    record_id: Identifier | None = Field(None, description="None creates a record")
    owner_id: Identifier
    fields: dict[str, Any]
    external_ref: str | None = Field(
        None, max_length=1024, description="provider-side id, so the CRM can find the record again"
    )


class DeleteRecord(Message):
    kind: Literal["delete_record"] = "delete_record"
    module: CrmModule
    record_id: Identifier


class EmailAttachmentInfo(Message):
    name: str
    size: int = Field(ge=0)
    content_type: str = "application/octet-stream"


class AttachEmail(Message):
    """A mail message shown in a record's related list."""

    kind: Literal["attach_email"] = "attach_email"
    module: Literal[CrmModule.LEADS, CrmModule.CONTACTS, CrmModule.DEALS]
    record_id: Identifier
    message_id: str = Field(min_length=1, max_length=1024)
    thread_id: str = Field(min_length=1, max_length=1024)
    from_address: str
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    subject: str = ""
    date: AwareDatetime | None = None
    body_text: str = ""
    attachments: list[EmailAttachmentInfo] = Field(default_factory=list)
    visibility: Literal["private", "shared"]
    owner_id: Identifier
    mailbox: str = Field(min_length=1, max_length=320)


class LinkFile(Message):
    kind: Literal["link_file"] = "link_file"
    module: Literal[CrmModule.LEADS, CrmModule.CONTACTS, CrmModule.ACCOUNTS, CrmModule.DEALS]
    record_id: Identifier
    file_id: str
    name: str
    mime_type: str
    size: int | None = Field(None, ge=0)
    web_link: str | None = None


class InviteUser(Message):
    kind: Literal["invite_user"] = "invite_user"
    email: EmailStr
    display_name: str
    directory_user_id: str
    invited_by: Identifier


class JoinRequest(Message):
    """A directory user asks to join; every CRM user allowed to manage users gets it to approve."""

    kind: Literal["join_request"] = "join_request"
    email: EmailStr
    display_name: str
    directory_user_id: str


CommandAction = Annotated[
    UpsertRecord | DeleteRecord | AttachEmail | LinkFile | InviteUser | JoinRequest,
    Field(discriminator="kind"),
]


class CrmCommand(Message):
    """A writeback to the CRM. The CRM applies a given idempotency key once, however often it arrives."""

    org_id: Identifier
    idempotency_key: str = Field(min_length=1, max_length=512)
    correlation_id: str = Field(default_factory=lambda: str(uuid.uuid4()), max_length=128)
    issued_by: str = Field(description="the integration that issued it, e.g. google_calendar")
    issued_at: AwareDatetime
    action: CommandAction
