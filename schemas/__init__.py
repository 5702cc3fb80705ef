"""The bus contract: every message on every topic, as pydantic v2 models with a schema version."""
from schemas.base import Message, user_key
from schemas.crm import (
    AttachEmail,
    ChangeSource,
    CrmChange,
    CrmCommand,
    CrmModule,
    CrmOp,
    DeleteRecord,
    EmailAttachmentInfo,
    InviteUser,
    JoinRequest,
    LinkFile,
    UpsertRecord,
)
from schemas.dead_letter import DeadLetter
from schemas.integration import Caps, Direction, GmailMailbox, Integration, IntegrationConfig, Pop3Mailbox
from schemas.jobs import SyncJob, SyncJobKind
from schemas.provider import NotificationKind, ProviderNotification

BUS_MODELS: tuple[type[Message], ...] = (
    CrmChange,
    CrmCommand,
    ProviderNotification,
    IntegrationConfig,
    SyncJob,
    DeadLetter,
)

__all__ = [
    "BUS_MODELS",
    "AttachEmail",
    "Caps",
    "ChangeSource",
    "CrmChange",
    "CrmCommand",
    "CrmModule",
    "CrmOp",
    "DeadLetter",
    "DeleteRecord",
    "Direction",
    "EmailAttachmentInfo",
    "GmailMailbox",
    "Integration",
    "IntegrationConfig",
    "InviteUser",
    "JoinRequest",
    "LinkFile",
    "Message",
    "NotificationKind",
    "Pop3Mailbox",
    "ProviderNotification",
    "SyncJob",
    "SyncJobKind",
    "UpsertRecord",
    "user_key",
]
