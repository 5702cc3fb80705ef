"""Writes to the CRM: every change a sync makes there is a command on `crm.commands`.

Each command carries an idempotency key built from what caused it (a redelivered message asks the same
write again, and the CRM applies it once) and a correlation id of ours, so the CRM's change coming back
is known as our own echo and not synced again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from schemas import CrmCommand, CrmModule, IntegrationConfig, UpsertRecord
from services.calendar_sync import mapping, rules
from services.calendar_sync.model import Attendee, CanonicalEvent
from services.calendar_sync.ports import ProviderEvent
from services.calendar_sync.store import CrmIndex, PendingCreation, ScopeState
from services.common.logging import get_logger

log = get_logger(__name__)

CORRELATION_PREFIX = "calendar_sync:"

CommandPublisher = Callable[[CrmCommand], Awaitable[None]]


def is_our_correlation(correlation_id: str | None) -> bool:
    return bool(correlation_id) and correlation_id.startswith(CORRELATION_PREFIX)


class CrmWrites:
    def __init__(self, redis, publish_command: CommandPublisher, index: CrmIndex, now: Callable[[], dt.datetime]):
        self.redis = redis
        self.publish_command = publish_command
        self.index = index
        self.now = now

    async def update_event(self, config, crm_id: str, event: CanonicalEvent, idempotency: str,
                          before: CanonicalEvent | None) -> None:
        """Write the event to the CRM record: only the fields that differ from `before`, what the CRM held
        as far as we know, so a CRM edit not indexed yet (its change still on its way) is not overwritten."""
        indexed = await self.index.event(config.org_id, config.user_id, crm_id)
        current_fields = indexed.change.fields if indexed else None  # keeps what the canonical form does not hold
        fields = mapping.changed_crm_fields(before, event, current_fields)
        if not fields:
            return
        action = UpsertRecord(module=CrmModule.EVENTS, record_id=crm_id, owner_id=config.user_id, fields=fields)
        await self.send(config, action, f"update:{crm_id}:{idempotency}")

    async def send(self, config, action, idempotency: str, correlation_id: str | None = None) -> None:
        await self.command(config.org_id, config.key, action, idempotency, correlation_id)

    async def command(self, org_id: str, scope: str, action, idempotency: str, correlation_id: str | None = None):
        command = CrmCommand(
            org_id=org_id,
            idempotency_key=f"{scope}:{idempotency}"[:512],
            correlation_id=correlation_id or CORRELATION_PREFIX + uuid.uuid4().hex,
            issued_by=scope.rsplit(":", 1)[-1],
            issued_at=self.now(),
            action=action,
        )
        await self.publish_command(command)

    async def log_conflicts(self, config, crm_id: str, conflicts) -> None:
        if not conflicts:
            return
        entries = [{"crm_id": crm_id, "field": c.field, "crm_value": c.crm_value, "provider_value": c.provider_value,
                    "winner": c.winner, "at": self.now().isoformat()} for c in conflicts]
        for entry in entries:
            log.warning("two-way conflict", **entry)
        await ScopeState(self.redis, config.key).log_conflicts(entries)

    async def add_guests_as_contacts(self, config, attendees: tuple[Attendee, ...], own_address: str) -> None:
        addresses = [a.email for a in attendees]
        known = await self.index.known_contacts(config.org_id, addresses)
        for guest in rules.guests_to_add_as_contacts(attendees, known, {own_address.lower()}):
            if not await self.index.claim_new_contact(config.org_id, guest.email):
                continue  # another user's sync created it first
            name = guest.name or guest.email.split("@")[0]
            action = UpsertRecord(module=CrmModule.CONTACTS, owner_id=config.user_id,
                                  fields={"Email": guest.email, "Last_Name": name, "Lead_Source": "Calendar guest"},
                                  external_ref=f"guest:{guest.email}")
            await self.send(config, action, f"guest:{guest.email}")


@dataclass(frozen=True)
class CrmCreation:
    """The CRM record a provider event with no CRM record asks for, and how its echo is recognised."""

    correlation_id: str
    pending: PendingCreation
    action: UpsertRecord
    idempotency: str


def creation_meeting(remote: ProviderEvent) -> str | None:
    """The meeting a new provider event is a copy of (its iCalUID), claimed by the first user it is seen
    for. An exception of a series shares the series' iCalUID: it is its own CRM event, tied to the series."""
    return None if remote.series_id else rules.meeting_key(remote.event)


def crm_creation(config: IntegrationConfig, remote: ProviderEvent, own_address: str, owner: str,
                 series_fields: dict) -> CrmCreation:
    """The CRM creation for `remote`, owned by `owner` (who claimed its meeting; the user otherwise): a
    meeting someone else owns gets the user as a participant, not a second record."""
    event = remote.event
    meeting = creation_meeting(remote)
    external_ref = f"meeting:{_digest(meeting)}" if meeting else f"{config.integration.value}:{remote.provider_id}"
    fields = mapping.canonical_to_crm(event) | series_fields
    if owner != config.user_id:  # someone else's copy of the meeting exists: join it
        fields = {"Participants": _with_participant(fields.get("Participants", []), own_address)}
    fingerprint = event.fingerprint()
    return CrmCreation(
        correlation_id=CORRELATION_PREFIX + uuid.uuid4().hex,
        pending=PendingCreation(config.key, remote.provider_id, event, fingerprint, remote.etag),
        action=UpsertRecord(module=CrmModule.EVENTS, owner_id=owner, fields=fields, external_ref=external_ref),
        idempotency=f"create:{remote.provider_id}:{fingerprint}",
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _with_participant(participants: list[dict], address: str) -> list[dict]:
    if any(str(p.get("Email", "")).lower() == address.lower() for p in participants):
        return participants
    return [*participants, {"type": "user", "Email": address.lower(), "name": "", "status": "accepted"}]
