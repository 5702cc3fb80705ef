"""calendar_sync's state in Redis: what several workers share and a restart must find again.

Per user integration (`org:user:integration`, "scope" below):
  calmap:<scope>:crm:<crm id>        the mapping: provider id, last synced snapshot, fingerprints, version
  calmap:<scope>:prov:<digest>       provider id -> crm id (provider ids may hold any character)
  calcursor:<scope>                  the sync token / delta link
  calwatch:<scope>                   the open push channel (id, resource, expiry, secret)
  calpending:<correlation id>        a CRM creation we asked for: which provider event it is for
  calseriesbacklog:<digest>          a series' occurrences waiting for its CRM record (series_backlog.py)
  calconflicts:<scope>               the last clashes of the three-way merge (newest first, capped)
Per org:
  calsettings:<org>                  the org's calendar settings (OrgCalendarSettings)
  calcrm:<org>:<owner>               the owner's CRM events as last announced (record id -> change JSON)
  calcrmowner:<org>                  record id -> its owner, to see an event move from one owner to another
  calcontacts:<org>                  lower-cased addresses of the org's CRM contacts
  calmeeting:<org>:<digest>          iCalUID -> the owner of the CRM event that stands for that meeting
A mapping is updated with compare-and-set on its version, so two writers cannot both win.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, fields, replace

import orjson
import redis.asyncio as aioredis

from schemas import CrmChange
from services.calendar_sync import rules
from services.calendar_sync.model import CanonicalEvent
from services.common.retry import TransientError
from services.common.state import key


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class EventMapping:
    crm_id: str
    provider_id: str
    snapshot: CanonicalEvent | None  # both sides as they were after the last sync
    crm_fingerprint: str | None = None  # of what the CRM holds after our last write
    provider_fingerprint: str | None = None  # of what the provider holds after our last write
    etag: str | None = None
    version: int = 0
    crm_modified_at: str | None = None  # of the CRM version the last sync took in (ISO); older changes are stale
    # The event as the provider held it after the last sync: the provider side's base in a three-way
    # merge (it may lack what the provider does not take, e.g. attendees Outlook was not sent).
    provider_snapshot: CanonicalEvent | None = None

    def to_json(self) -> str:
        # Field by field, not asdict(): that deep-copies both events first, only for them to be dumped.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("snapshot", "provider_snapshot"):
            event = data[name]
            data[name] = event.model_dump(mode="json") if event else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> EventMapping:
        data = json.loads(raw)
        events = {name: data.pop(name, None) for name in ("snapshot", "provider_snapshot")}
        return cls(**{name: CanonicalEvent.model_validate(e) if e else None for name, e in events.items()}, **data)


class VersionConflict(TransientError):
    """Another writer updated the mapping first: the message is handled again, and decides afresh."""


# Compare-and-set: write the mapping and its reverse index only if the stored version is the expected one.
_CAS = """
local current = redis.call('HGET', KEYS[1], 'version')
if (current or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'mapping', ARGV[3])
redis.call('SET', KEYS[2], ARGV[4])
if ARGV[5] ~= '' then redis.call('DEL', ARGV[5]) end
return 1
"""


# The mapping of a provider id in one round trip: the reverse index names the CRM id, whose key is
# ARGV[1] (the scope's mapping prefix) followed by it.
_BY_PROVIDER = """
local crm_id = redis.call('GET', KEYS[1])
if not crm_id then return false end
return redis.call('HGET', ARGV[1] .. crm_id, 'mapping')
"""


class MappingStore:
    def __init__(self, redis: aioredis.Redis, scope: str):
        self.redis = redis
        self.scope = scope
        self._cas = redis.register_script(_CAS)
        self._by_provider = redis.register_script(_BY_PROVIDER)

    def _crm_key(self, crm_id: str) -> str:
        return key("calmap", *self.scope.split(":"), "crm", crm_id)

    def _provider_key(self, provider_id: str) -> str:
        return key("calmap", *self.scope.split(":"), "prov", _digest(provider_id))

    async def by_crm_id(self, crm_id: str) -> EventMapping | None:
        raw = await self.redis.hget(self._crm_key(crm_id), "mapping")
        return EventMapping.from_json(raw) if raw else None

    async def by_crm_id_with_indexed(self, index: CrmIndex, org_id: str, owner_id: str,
                                     crm_id: str) -> tuple[EventMapping | None, IndexedEvent | None]:
        """The record's mapping and its CRM index entry in one round trip (a CRM change needs both)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._crm_key(crm_id), "mapping")
            pipe.hget(index.events_key(org_id, owner_id), crm_id)
            raw, value = await pipe.execute()
        return (EventMapping.from_json(raw) if raw else None), (None if value is None else _indexed(value))

    async def by_provider_id(self, provider_id: str) -> EventMapping | None:
        raw = await self._by_provider(keys=[self._provider_key(provider_id)], args=[self._crm_key("")])
        return EventMapping.from_json(raw) if raw else None

    async def save(self, mapping: EventMapping, previous: EventMapping | None) -> EventMapping:
        """Store `mapping` if nobody changed it since `previous` was read; returns it with its new version."""
        keys, args, saved = self._cas_call(mapping, previous)
        ok = await self._cas(keys=keys, args=args)
        if not ok:
            raise VersionConflict(f"mapping of {mapping.crm_id} changed meanwhile")
        return saved

    # --- batches: a whole-calendar pass (first sync, resync) reads and writes a page of mappings in one
    # round trip each, where one event's work takes them one by one ------------------------------------
    async def by_crm_ids(self, crm_ids: list[str]) -> dict[str, EventMapping]:
        """The mappings of these CRM records that exist, by CRM id."""
        if not crm_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for crm_id in crm_ids:
                pipe.hget(self._crm_key(crm_id), "mapping")
            raws = await pipe.execute()
        return {crm_id: EventMapping.from_json(raw) for crm_id, raw in zip(crm_ids, raws) if raw}

    async def by_provider_ids(self, provider_ids: list[str]) -> dict[str, EventMapping]:
        """The mappings of these provider events that exist, by provider id."""
        if not provider_ids:
            return {}
        crm_ids = await self.redis.mget([self._provider_key(p) for p in provider_ids])
        linked = {p: c for p, c in zip(provider_ids, crm_ids) if c}
        found = await self.by_crm_ids(list(dict.fromkeys(linked.values())))
        return {p: found[c] for p, c in linked.items() if c in found}

    async def save_many(self, pairs: list[tuple[EventMapping, EventMapping | None]]) -> list[EventMapping]:
        """`save` for each (mapping, previous) pair, all in one round trip; each is compared and set on
        its own. Raises VersionConflict after the others are stored when one changed meanwhile."""
        if not pairs:
            return []
        saved = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for mapping, previous in pairs:
                keys, args, new = self._cas_call(mapping, previous)
                saved.append(new)
                await self._cas(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        lost = [m.crm_id for m, ok in zip(saved, results) if not ok]
        if lost:
            raise VersionConflict(f"mappings of {len(lost)} records changed meanwhile, first {lost[0]}")
        return saved

    def _cas_call(self, mapping: EventMapping, previous: EventMapping | None) -> tuple[list[str], list[str], EventMapping]:
        """The compare-and-set script's keys and arguments for saving `mapping` over `previous`."""
        expected = previous.version if previous else 0
        saved = replace(mapping, version=expected + 1)
        stale_reverse = ""
        if previous and previous.provider_id != mapping.provider_id:
            stale_reverse = self._provider_key(previous.provider_id)
        keys = [self._crm_key(mapping.crm_id), self._provider_key(mapping.provider_id)]
        return keys, [str(expected), str(saved.version), saved.to_json(), mapping.crm_id, stale_reverse], saved

    async def remove(self, mapping: EventMapping) -> None:
        await self.redis.delete(self._crm_key(mapping.crm_id), self._provider_key(mapping.provider_id))

    async def all(self) -> list[EventMapping]:
        out = []
        async for name in self.redis.scan_iter(match=key("calmap", *self.scope.split(":"), "crm", "*"), count=500):
            raw = await self.redis.hget(name, "mapping")
            if raw:
                out.append(EventMapping.from_json(raw))
        return out

    async def clear(self) -> int:
        names = [n async for n in self.redis.scan_iter(match=key("calmap", *self.scope.split(":"), "*"), count=500)]
        if names:
            await self.redis.delete(*names)
        return len(names)


class OrgCalendarSettings:
    """An org's calendar settings, written by ingest's admin API (`/v1/orgs/{org}/calendar-settings`):

        calsettings:<org>    hash  notify_participants_on_change -> "1"

    Off unless an admin turns it on: a sync then never mails attendees, even for a participant list a
    CRM user changed.
    """

    NOTIFY = "notify_participants_on_change"

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def notifies_participants(self, org_id: str) -> bool:
        return await self.redis.hget(key("calsettings", org_id), self.NOTIFY) == "1"

    async def set_notify_participants(self, org_id: str, enabled: bool) -> None:
        if enabled:
            await self.redis.hset(key("calsettings", org_id), self.NOTIFY, "1")
        else:
            await self.redis.hdel(key("calsettings", org_id), self.NOTIFY)


class ScopeState:
    """The cursor, the push channel and the conflict log of one user integration."""

    def __init__(self, redis: aioredis.Redis, scope: str):
        self.redis = redis
        self.scope = scope
        parts = scope.split(":")
        self._cursor = key("calcursor", *parts)
        self._watch = key("calwatch", *parts)
        self._conflicts = key("calconflicts", *parts)

    async def cursor(self) -> str | None:
        return await self.redis.get(self._cursor)

    async def set_cursor(self, cursor: str | None) -> None:
        if cursor is None:
            await self.redis.delete(self._cursor)
        else:
            await self.redis.set(self._cursor, cursor)

    async def watch(self) -> dict | None:
        raw = await self.redis.get(self._watch)
        return json.loads(raw) if raw else None

    async def set_watch(self, channel: dict | None) -> None:
        if channel is None:
            await self.redis.delete(self._watch)
        else:
            await self.redis.set(self._watch, json.dumps(channel))

    async def log_conflicts(self, entries: list[dict], keep: int = 500) -> None:
        if not entries:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.lpush(self._conflicts, json.dumps(entry, default=str))
            pipe.ltrim(self._conflicts, 0, keep - 1)
            await pipe.execute()

    async def conflicts(self, limit: int = 100) -> list[dict]:
        return [json.loads(raw) for raw in await self.redis.lrange(self._conflicts, 0, limit - 1)]


@dataclass(frozen=True)
class PendingCreation:
    """A CRM event we asked the CRM to create for a provider event; its id arrives with the echo."""

    scope: str
    provider_id: str
    snapshot: CanonicalEvent
    provider_fingerprint: str
    etag: str | None = None
    created_at: float = field(default_factory=time.time)


# Creations put with their markers, all at once: KEYS each creation's key followed by its marker's, pair by
# pair; ARGV the time to live (s), then each creation's JSON. One command however many: a first sync's
# page puts hundreds, which a pipeline would pack and send one command at a time.
_PUT_PENDING = """
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i], ARGV[(i + 1) / 2 + 1], 'EX', ARGV[1])
  redis.call('SET', KEYS[i + 1], 'pending', 'EX', ARGV[1])
end
return #KEYS / 2
"""

# The creation and its marker, both taken: [creation JSON, marker value or ""]; [creation JSON] when the
# creation does not name its marker (put by an older version); false (nil) when there is no such creation.
_TAKE_PENDING_FUNCTION = """
local function take_pending(name)
  local raw = redis.call('GETDEL', name)
  if not raw then return false end
  local marker = cjson.decode(raw)['marker']
  if type(marker) ~= 'string' then return {raw} end
  return {raw, redis.call('GETDEL', marker) or ''}
end
"""
_TAKE_PENDING = _TAKE_PENDING_FUNCTION + "return take_pending(KEYS[1])"


class PendingCreations:
    """CRM creations on their way, by correlation id; and, by provider event, whether the provider deleted
    the event before the CRM's echo told us the new record's id (the delete must then follow it there)."""

    def __init__(self, redis: aioredis.Redis, ttl_s: int = 7 * 86400):
        self.redis = redis
        self.ttl_s = ttl_s
        self._take = redis.register_script(_TAKE_PENDING)
        self._put = redis.register_script(_PUT_PENDING)

    @staticmethod
    def _for(scope: str, provider_id: str) -> str:
        return key("calpendingfor", _digest(f"{scope}\x1f{provider_id}"))

    @staticmethod
    def marker(scope: str, provider_id: str) -> str:
        """The key that exists while this provider event's CRM creation is on its way (series_backlog.py
        keeps a series' occurrences only then, checked atomically with it)."""
        return PendingCreations._for(scope, provider_id)

    async def put(self, correlation_id: str, pending: PendingCreation) -> None:
        await self.put_many([(correlation_id, pending)])

    async def put_many(self, creations: list[tuple[str, PendingCreation]]) -> None:
        """Remember each (correlation id, creation) and mark its provider event pending, all in one
        script call (a first sync's page): atomic, as each creation and its marker must be."""
        if not creations:
            return
        names, values = [], [str(self.ttl_s)]
        for correlation_id, pending in creations:
            data = {f.name: getattr(pending, f.name) for f in fields(pending)}
            data["snapshot"] = pending.snapshot.model_dump(mode="json")
            data["marker"] = self._for(pending.scope, pending.provider_id)
            names += [self.key_of(correlation_id), data["marker"]]
            # orjson: plain data only (strings, small numbers), read back alike; json.dumps was a few % of
            # a first sync's CPU here
            values.append(orjson.dumps(data))
        await self._put(keys=names, args=values)

    async def mark_gone(self, scope: str, provider_id: str) -> bool:
        """The provider deleted an event we have no mapping for: True when its CRM creation is on its way."""
        return bool(await self.redis.set(self._for(scope, provider_id), "gone", xx=True, keepttl=True))

    async def take(self, correlation_id: str) -> tuple[PendingCreation, bool] | None:
        """The creation, and whether its provider event was deleted meanwhile; None when not ours to take.
        One round trip: the creation names its marker, taken with it (every echo of a first sync's
        thousands of creations comes here)."""
        return await self.taken(await self._take(keys=[self.key_of(correlation_id)]))

    @staticmethod
    def key_of(correlation_id: str) -> str:
        return key("calpending", _digest(correlation_id))

    async def taken(self, answer: list | None) -> tuple[PendingCreation, bool] | None:
        """What `take` returns, from the answer of the take_pending script function."""
        if answer is None:
            return None
        data = json.loads(answer[0])
        data.pop("marker", None)
        pending = PendingCreation(**(data | {"snapshot": CanonicalEvent.model_validate(data["snapshot"])}))
        if len(answer) == 1:  # put before creations named their marker
            return pending, await self.redis.getdel(self._for(pending.scope, pending.provider_id)) == "gone"
        return pending, answer[1] == "gone"


@dataclass(frozen=True)
class IndexedEvent:
    """A CRM event as the CRM last announced it, with how it entered the CRM and whether it is synced."""

    change: CrmChange
    created_source: str  # the source of the first change seen: "integration" when it came from a provider
    in_sync: bool  # brought into sync (rules.brought_into_sync): not while only imported or migrated


# A record's first change indexed, unless it is indexed already (a redelivery: then read and decided as any
# change is): KEYS owners hash, the owner's events hash; ARGV record id, owner id, entry JSON. 1: indexed.
_INDEX_NEW_FUNCTION = """
local function index_new()
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
"""
_INDEX_NEW = _INDEX_NEW_FUNCTION + "return index_new()"
# The echo of a creation we asked for: the new record indexed as _INDEX_NEW does, then (KEYS[3]) the pending
# creation taken as _TAKE_PENDING does: [1, taken]. [0] when the record was indexed already, nothing taken.
_INDEX_NEW_AND_TAKE = _INDEX_NEW_FUNCTION + _TAKE_PENDING_FUNCTION + """
if index_new() == 0 then return {0} end
return {1, take_pending(KEYS[3])}
"""


# Meetings claimed, each by the owner given unless an earlier one holds it: KEYS the meetings' keys, ARGV[1]
# the owner; answers each meeting's owner after the claim, in order. One command for a first sync's page.
_CLAIM_MEETINGS = """
local owners = {}
for i, name in ipairs(KEYS) do
  if redis.call('SET', name, ARGV[1], 'NX') then
    owners[i] = ARGV[1]
  else
    owners[i] = redis.call('GET', name)
  end
end
return owners
"""


class CrmIndex:
    """What the CRM last announced: each owner's events, and the org's contact addresses.

    Built from crm.changes, so a first sync knows the CRM's events without asking the CRM.
    """

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._index_new = redis.register_script(_INDEX_NEW)
        self._claim_meetings = redis.register_script(_CLAIM_MEETINGS)
        self._index_new_and_take = redis.register_script(_INDEX_NEW_AND_TAKE)

    async def record_event(self, change: CrmChange) -> str | None:
        """Index the change; the previous owner when the event moved to another one (else None)."""
        owners = key("calcrmowner", change.org_id)
        if change.op == "created" and await self._index_new(**self._new_call(change)):
            return None  # a new record, indexed in one round trip
        # One round trip in the usual case: the entry is read where it is when the owner did not change.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(owners, change.record_id)
            pipe.hget(self.events_key(change.org_id, change.owner_id), change.record_id)
            previous_owner, previous = await pipe.execute()
        moved_from = previous_owner if previous_owner not in (None, change.owner_id) else None
        held_by = self.events_key(change.org_id, previous_owner or change.owner_id)
        if moved_from:
            previous = await self.redis.hget(held_by, change.record_id)
        if change.op == "deleted":
            await self.redis.hdel(held_by, change.record_id)
            await self.redis.hdel(owners, change.record_id)
            return moved_from
        entry = self._entry(change, json.loads(previous) if previous else None)
        async with self.redis.pipeline(transaction=True) as pipe:
            if moved_from:
                pipe.hdel(held_by, change.record_id)
            pipe.hset(self.events_key(change.org_id, change.owner_id), change.record_id, json.dumps(entry))
            pipe.hset(owners, change.record_id, change.owner_id)
            await pipe.execute()
        return moved_from

    def _new_call(self, change: CrmChange) -> dict:
        """The keys and arguments of the index_new script function for a `created` change."""
        return {"keys": [key("calcrmowner", change.org_id), self.events_key(change.org_id, change.owner_id)],
                "args": [change.record_id, change.owner_id, json.dumps(self._entry(change, None))]}

    async def record_echo(self, change: CrmChange,
                          pending: PendingCreations) -> tuple[str | None, tuple[PendingCreation, bool] | None]:
        """`record_event`, then `pending.take` of its correlation id, for a change of ours coming back: (the
        previous owner, what was taken). A record we had created (a first sync's thousands of echoes) in
        one script call, not two."""
        if change.op == "created":
            call = self._new_call(change)
            answer = await self._index_new_and_take(keys=[*call["keys"], pending.key_of(change.correlation_id)],
                                                    args=call["args"])
            if answer[0]:
                return None, await pending.taken(answer[1])
        return await self.record_event(change), await pending.take(change.correlation_id)

    @staticmethod
    def _entry(change: CrmChange, earlier: dict | None) -> dict:
        # How a record entered the CRM decides whether it is synced until a person touches it: keep its first source.
        return {
            "change": change.model_dump(mode="json"),
            "created_source": earlier["created_source"] if earlier else change.source.value,
            "in_sync": rules.brought_into_sync(_in_sync(earlier), change.source),
        }

    async def events_of(self, org_id: str, owner_id: str) -> dict[str, IndexedEvent]:
        raw = await self.redis.hgetall(self.events_key(org_id, owner_id))
        return {record_id: _indexed(value) for record_id, value in raw.items()}

    @staticmethod
    def events_key(org_id: str, owner_id: str) -> str:
        return key("calcrm", org_id, owner_id)

    async def event(self, org_id: str, owner_id: str, record_id: str) -> IndexedEvent | None:
        value = await self.redis.hget(self.events_key(org_id, owner_id), record_id)
        return None if value is None else _indexed(value)

    async def record_contact(self, change: CrmChange) -> None:
        address = str(change.fields.get("Email") or "").strip().lower()
        if address and change.op != "deleted":
            await self.redis.sadd(key("calcontacts", change.org_id), address)

    async def claim_new_contact(self, org_id: str, address: str) -> bool:
        """True once per address: the caller creates the contact, nobody else does."""
        return bool(await self.redis.sadd(key("calcontacts", org_id), address.strip().lower()))

    async def known_contacts(self, org_id: str, addresses: list[str]) -> set[str]:
        if not addresses:
            return set()
        lowered = [a.lower() for a in addresses]
        flags = await self.redis.smismember(key("calcontacts", org_id), lowered)
        return {a for a, known in zip(lowered, flags) if known}

    async def claim_meeting(self, org_id: str, ical_uid: str, owner_id: str) -> str:
        """Who owns this meeting in the CRM: `owner_id` if it is the first to claim it, else the earlier one.

        The same meeting on several users' calendars (one iCalUID) becomes one CRM event, owned by
        the first user it was seen for; the others are added as its participants.
        """
        return (await self.claim_meetings(org_id, [ical_uid], owner_id))[ical_uid]

    async def claim_meetings(self, org_id: str, ical_uids: list[str], owner_id: str) -> dict[str, str]:
        """`claim_meeting` for each of these meetings, in order and in one script call: iCalUID -> owner."""
        if not ical_uids:
            return {}
        owners = await self._claim_meetings(keys=[self._meeting(org_id, uid) for uid in ical_uids], args=[owner_id])
        return dict(zip(ical_uids, owners))

    @staticmethod
    def _meeting(org_id: str, ical_uid: str) -> str:
        return key("calmeeting", org_id, _digest(ical_uid.lower()))


def _in_sync(entry: dict | None) -> bool | None:
    """Entries indexed before `in_sync` existed say it through their first source."""
    if entry is None:
        return None
    return entry.get("in_sync", entry["created_source"] not in ("import", "migration"))


def _indexed(value: str) -> IndexedEvent:
    entry = json.loads(value)
    return IndexedEvent(CrmChange.model_validate(entry["change"]), entry["created_source"], bool(_in_sync(entry)))
