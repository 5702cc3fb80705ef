"""Re-linking earlier mail: when an org has it on and a lead or contact gets an address (a new record,
or an edit), the mail already fetched that carries the address is attached to the record too, and, for
a contact, to the deals it is the primary contact of. Likewise a deal whose primary contact changes gets
the new contact's mail already fetched. Without it, the change links only later mail.

The commands carry the idempotency keys the fetch would have given them (mailbox + message + record),
so mail the record already shows is not attached twice. It runs before the index records the new
address: a change redelivered after a crash finds the address still new and re-links again, under the
same keys, rather than losing the re-link. Mail of a deactivated owner stays hidden.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from schemas import CrmCommand, CrmModule
from services.common.topics import CRM_COMMANDS
from services.mail_fetch.address_index import AddressIndex
from services.mail_fetch.commands import attach_commands
from services.mail_fetch.delivery import Publisher
from services.mail_fetch.kept_mail import KeptMail
from services.mail_fetch.matching import RecordRef
from services.mail_fetch.org_settings import OrgMailSettings


class Relinker:
    def __init__(self, index: AddressIndex, kept: KeptMail, settings: OrgMailSettings, publisher: Publisher):
        self.index = index
        self.kept = kept
        self.settings = settings
        self.publisher = publisher

    async def relink(self, org_id: str, record: RecordRef, addresses: Iterable[str]) -> int:
        """Attach the kept mail of newly added addresses to the record; returns how many commands went out."""
        addresses = list(addresses)
        if not addresses or not await self.settings.relinks(org_id):
            return 0
        records = [record]
        if record.module == CrmModule.CONTACTS:
            records += [RecordRef(CrmModule.DEALS, d) for d in await self.index.deals_of(org_id, record.record_id)]
        return await self._publish(await self._commands(org_id, records, addresses))

    async def relink_deal(self, org_id: str, deal_id: str, contact_id: str) -> int:
        """A deal's new primary contact: attach the kept mail of the contact's addresses to the deal."""
        if not await self.settings.relinks(org_id):
            return 0
        addresses = await self.index.addresses_of(org_id, RecordRef(CrmModule.CONTACTS, contact_id))
        commands = await self._commands(org_id, [RecordRef(CrmModule.DEALS, deal_id)], addresses)
        return await self._publish(commands)

    async def _publish(self, commands: list[CrmCommand]) -> int:
        for command in commands:
            await self.publisher.publish(CRM_COMMANDS.name, command.org_id, command)
        return len(commands)

    async def _commands(self, org_id: str, records: list[RecordRef], addresses: list[str]) -> list[CrmCommand]:
        now = dt.datetime.now(dt.UTC)
        active: dict[str, bool] = {}
        done: set[tuple[str, str]] = set()
        commands: list[CrmCommand] = []
        for address in addresses:
            for message in await self.kept.carrying(org_id, address):
                owner = message.mailbox.owner_id
                if (message.mailbox.name, message.key) in done:
                    continue
                done.add((message.mailbox.name, message.key))
                if owner not in active:
                    active[owner] = await self.index.user_active(org_id, owner)
                if active[owner]:
                    commands += attach_commands(message.fields, records, message.mailbox, message.key, now)
        return commands
