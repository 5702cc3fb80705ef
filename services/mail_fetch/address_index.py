"""The address index in Redis: which leads and contacts carry an address, which deals a contact is the
primary contact of, and which CRM users are deactivated.

mail_fetch keeps it from `crm.changes` (index_rules says how a change moves it). Every worker reads
it, whichever partitions it owns, so it lives in Redis rather than in a worker's memory. Keys:

    crmsync:mailindex:<org>:addr:<address>          hash  "<module>/<record_id>" -> linked since (ISO) or ""
    crmsync:mailindex:<org>:rec:<module>:<id>       set   the addresses the record carries now
    crmsync:mailindex:<org>:seen:<module>:<id>      str   the record has been indexed before
    crmsync:mailindex:<org>:deal:<deal_id>          str   the deal's primary contact id
    crmsync:mailindex:<org>:deals:<contact_id>      set   deals whose primary contact it is
    crmsync:mailindex:<org>:inactive                set   deactivated CRM user ids
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import redis.asyncio as aioredis

from schemas import CrmChange, CrmModule
from services.common.state import key
from services.mail_fetch.index_rules import (
    AddressChange,
    address_change,
    indexed_module,
    primary_contact,
    user_is_active,
)
from services.mail_fetch.matching import AddressLink, RecordRef
from services.mail_fetch.redis_bulk import RedisBulk

KIND = "mailindex"


def address_part(address: str) -> str:
    return address.replace(":", "%3A")  # a quoted local part may hold ':'; key parts may not


class AddressIndex:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.bulk = RedisBulk(redis)

    # --- keeping it from crm.changes --------------------------------------------------------------
    async def apply(self, change: CrmChange) -> None:
        if not indexed_module(change):
            return
        if change.module == CrmModule.USERS:
            await self._apply_user(change)
        elif change.module == CrmModule.DEALS:
            await self._apply_deal(change)
        else:
            await self._apply_addresses(change)

    async def _apply_addresses(self, change: CrmChange) -> None:
        await self.write_addresses(change, await self.address_diff(change))

    async def address_diff(self, change: CrmChange) -> AddressChange:
        """What a lead's or contact's change would do to its addresses, before it is written."""
        org = change.org_id
        previous = set(await self.redis.smembers(key(KIND, org, "rec", change.module.value, change.record_id)))
        known_before = previous or await self.redis.exists(key(KIND, org, "seen", change.module.value,
                                                                change.record_id))
        return address_change(change, previous, bool(known_before))

    async def write_addresses(self, change: CrmChange, diff: AddressChange) -> None:
        org, field = change.org_id, f"{change.module.value}/{change.record_id}"
        record_key = key(KIND, org, "rec", change.module.value, change.record_id)
        seen_key = key(KIND, org, "seen", change.module.value, change.record_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for address, since in diff.added.items():
                pipe.hset(key(KIND, org, "addr", address_part(address)), field, since.isoformat() if since else "")
                pipe.sadd(record_key, address)
            for address in diff.removed:
                pipe.hdel(key(KIND, org, "addr", address_part(address)), field)
                pipe.srem(record_key, address)
            pipe.set(seen_key, "1")
            await pipe.execute()

    async def primary_contact_of(self, org_id: str, deal_id: str) -> str | None:
        """The contact the index holds as the deal's primary contact."""
        return await self.redis.get(key(KIND, org_id, "deal", deal_id))

    async def addresses_of(self, org_id: str, record: RecordRef) -> list[str]:
        return sorted(await self.redis.smembers(key(KIND, org_id, "rec", record.module.value, record.record_id)))

    async def _apply_deal(self, change: CrmChange) -> None:
        org = change.org_id
        deal_key = key(KIND, org, "deal", change.record_id)
        before, after = await self.redis.get(deal_key), primary_contact(change)
        if before == after:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            if before:
                pipe.srem(key(KIND, org, "deals", before), change.record_id)
            if after:
                pipe.sadd(key(KIND, org, "deals", after), change.record_id)
                pipe.set(deal_key, after)
            else:
                pipe.delete(deal_key)
            await pipe.execute()

    async def _apply_user(self, change: CrmChange) -> None:
        inactive = key(KIND, change.org_id, "inactive")
        if user_is_active(change):
            await self.redis.srem(inactive, change.record_id)
        else:
            await self.redis.sadd(inactive, change.record_id)

    # --- reading it when mail arrives -------------------------------------------------------------
    async def user_active(self, org_id: str, user_id: str) -> bool:
        return not await self.redis.sismember(key(KIND, org_id, "inactive"), user_id)

    async def deals_of(self, org_id: str, contact_id: str) -> list[str]:
        """The deals whose primary contact this contact is."""
        return sorted(await self.redis.smembers(key(KIND, org_id, "deals", contact_id)))

    async def lookup(
        self, org_id: str, addresses: Iterable[str]
    ) -> tuple[dict[str, list[AddressLink]], dict[str, list[str]]]:
        """The links of each address, and the deals of every contact among them: two commands."""
        addresses = list(dict.fromkeys(addresses))
        answers = await self.bulk.hgetall([key(KIND, org_id, "addr", address_part(a)) for a in addresses])
        links = {address: [_link(field, since) for field, since in answer.items()]
                 for address, answer in zip(addresses, answers) if answer}
        contacts = sorted({link.record.record_id for found in links.values() for link in found
                           if link.record.module == CrmModule.CONTACTS})
        if not contacts:
            return links, {}
        deals = await self.bulk.smembers([key(KIND, org_id, "deals", contact) for contact in contacts])
        return links, {contact: sorted(ids) for contact, ids in zip(contacts, deals) if ids}


@functools.lru_cache(maxsize=16_384)
def _link(field: str, since: str) -> AddressLink:
    """An index entry as a link; cached (links are immutable), as a batch looks up the same few records
    again and again."""
    module, _, record_id = field.partition("/")
    return AddressLink(RecordRef(CrmModule(module), record_id), dt.datetime.fromisoformat(since) if since else None)
