"""The CRM's records in Redis, written in transactions that also queue the changes to announce.

A unit of work reads what it depends on, decides, and commits in one script call: the script checks
that everything read is still as it was (optimistic concurrency, like WATCH but in one round trip),
then writes the records, the indexes, the idempotency marker and the outbox entries of the changes
together. Two CRM processes, or one restarted half way, never apply a command twice nor lose the change
a write made. The outbox is drained to ingest by `outbox.ChangePublisher`.

Keys, under the project's scheme (`services.common.state.key`), per org:
  crm:<org>:record:<module>:<id>     the record (JSON)
  crm:<org>:records:<module>         index of the module's records (sorted set, by creation time)
  crm:<org>:ref:<module>:<digest>    record id of an external_ref (refs are provider ids: hashed)
  crm:<org>:applied:<digest>         an idempotency key applied, with its correlation id
  crm:<org>:emails:<module>:<id>     the record's emails related list (hash: message id -> entry)
  crm:<org>:files:<module>:<id>      the record's files related list (set of Attachments ids)
  crm:<org>:join-requests            pending join requests (hash: directory user id -> request)
and crm-outbox, one stream of changes waiting for ingest, in commit order. The commit script names the
keys it touches in its arguments, not in KEYS: the reference CRM runs on one Redis, not a cluster.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from sandbox.crm.records import CrmRecord, Origin
from schemas import CrmModule, CrmOp
from services.common.retry import TransientError
from services.common.state import key

T = TypeVar("T")

OUTBOX = key("crm-outbox")
OUTBOX_FIELD = "change"
MAX_ATTEMPTS = 50

_COMMIT = """
-- ARGV[1]: [[read command...], value it returned (false: nothing)]...; ARGV[2]: [write command...]...
-- Returns 0 once written, else the 1-based number of the first read whose answer changed.
for i, guard in ipairs(cjson.decode(ARGV[1])) do
  if redis.call(unpack(guard[1])) ~= guard[2] then return i end
end
for _, write in ipairs(cjson.decode(ARGV[2])) do redis.call(unpack(write)) end
return 0
"""


class AlreadyApplied(Exception):
    """The unit of work's idempotency key was committed before: nothing was written."""


class Contention(TransientError):
    """What a unit of work read kept changing under it: worth retrying a little later."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class OrgKeys:
    def __init__(self, org_id: str):
        self.org_id = org_id

    def record(self, module: CrmModule, record_id: str) -> str:
        return key("crm", self.org_id, "record", module.value, record_id)

    def index(self, module: CrmModule) -> str:
        return key("crm", self.org_id, "records", module.value)

    def ref(self, module: CrmModule, external_ref: str) -> str:
        return key("crm", self.org_id, "ref", module.value, _digest(external_ref))

    def applied(self, idempotency_key: str) -> str:
        return key("crm", self.org_id, "applied", _digest(idempotency_key))

    def emails(self, module: CrmModule, record_id: str) -> str:
        return key("crm", self.org_id, "emails", module.value, record_id)

    def files(self, module: CrmModule, record_id: str) -> str:
        return key("crm", self.org_id, "files", module.value, record_id)

    def join_requests(self) -> str:
        return key("crm", self.org_id, "join-requests")


class CrmTransaction:
    """One org's reads, each remembered as a guard, and the writes decided from them.

    Nothing is written before the store commits, so a unit of work may run again (when what it read
    changed meanwhile) and must have no other side effects. Within a batch (`CrmStore.transaction_batch`)
    its reads see what the batch's earlier units of work wrote, and what was read for the batch ahead.
    """

    def __init__(self, redis: aioredis.Redis, org_id: str, applied_ttl_s: int, view: BatchView | None = None):
        self.redis = redis
        self.org_id = org_id
        self.keys = OrgKeys(org_id)
        self.now = dt.datetime.now(dt.UTC)
        self._applied_ttl_s = applied_ttl_s
        self._view = view
        self.guards: list[list] = []
        self.writes: list[list[str]] = []
        self._once_guard: int | None = None

    async def _read(self, command: str, *args: str) -> str | None:
        """GET or HGET: a string or nothing, compared as such by the commit script."""
        source, value = self._view.lookup((command, *args)) if self._view is not None else (None, None)
        if source is _WRITTEN:
            return value  # decided by this batch's own writes, committed with them: nothing to guard
        if source is None:
            value = await self.redis.execute_command(command, *args)
        self.guards.append([[command, *args], False if value is None else value])
        return value

    # --- idempotency ------------------------------------------------------------------------------
    def once(self, idempotency_key: str, correlation_id: str) -> None:
        """Commit only if `idempotency_key` was never committed, and remember it from then on.

        In a batch, a key the batch applied already, or read as applied, raises AlreadyApplied at once."""
        name = self.keys.applied(idempotency_key)
        if self._view is not None:
            source, exists = self._view.lookup(("EXISTS", name))
            if source is not None and exists:
                raise AlreadyApplied()
        self._once_guard = len(self.guards)
        self.guards.append([["EXISTS", name], 0])
        self.writes.append(["SET", name, correlation_id, "EX", str(self._applied_ttl_s)])

    def is_once_guard(self, guard_index: int) -> bool:
        return guard_index == self._once_guard

    # --- reads ------------------------------------------------------------------------------------
    async def record(self, module: CrmModule, record_id: str) -> CrmRecord | None:
        raw = await self._read("GET", self.keys.record(module, record_id))
        return CrmRecord.model_validate_json(raw) if raw else None

    async def record_by_ref(self, module: CrmModule, external_ref: str) -> CrmRecord | None:
        record_id = await self._read("GET", self.keys.ref(module, external_ref))
        return await self.record(module, record_id) if record_id else None

    async def has_email(self, module: CrmModule, record_id: str, message_id: str) -> bool:
        return await self._read("HGET", self.keys.emails(module, record_id), message_id) is not None

    async def join_request(self, directory_user_id: str) -> dict | None:
        raw = await self._read("HGET", self.keys.join_requests(), directory_user_id)
        return json.loads(raw) if raw else None

    # --- writes -----------------------------------------------------------------------------------
    def save(self, record: CrmRecord, previous: CrmRecord | None, origin: Origin) -> None:
        """Create or update `record` and announce it."""
        module = record.module
        self.writes.append(["SET", self.keys.record(module, record.id), record.model_dump_json()])
        if previous is None:
            self.writes.append(["ZADD", self.keys.index(module), repr(record.created_at.timestamp()), record.id])
        if previous is not None and previous.external_ref not in (None, record.external_ref):
            self.writes.append(["DEL", self.keys.ref(module, previous.external_ref)])
        if record.external_ref is not None:
            self.writes.append(["SET", self.keys.ref(module, record.external_ref), record.id])
        self._link_to_parent(record, previous)
        self._announce(record, CrmOp.CREATED if previous is None else CrmOp.UPDATED, origin)

    def remove(self, record: CrmRecord, origin: Origin) -> None:
        """Delete `record` with its related lists and announce it."""
        module = record.module
        self.writes.append(["DEL", self.keys.record(module, record.id), self.keys.emails(module, record.id),
                            self.keys.files(module, record.id)])
        self.writes.append(["ZREM", self.keys.index(module), record.id])
        if record.external_ref is not None:
            self.writes.append(["DEL", self.keys.ref(module, record.external_ref)])
        self._link_to_parent(None, record)
        self._announce(record.model_copy(update={"modified_at": self.now}), CrmOp.DELETED, origin)

    def add_email(self, module: CrmModule, record_id: str, message_id: str, entry: dict) -> None:
        self.writes.append(["HSET", self.keys.emails(module, record_id), message_id, json.dumps(entry)])

    def put_join_request(self, directory_user_id: str, request: dict) -> None:
        self.writes.append(["HSET", self.keys.join_requests(), directory_user_id, json.dumps(request)])

    def drop_join_request(self, directory_user_id: str) -> None:
        self.writes.append(["HDEL", self.keys.join_requests(), directory_user_id])

    def _link_to_parent(self, record: CrmRecord | None, previous: CrmRecord | None) -> None:
        """Keep an attachment in its parent's files related list, following a change of parent."""
        old = previous.attachment_parent() if previous else None
        new = record.attachment_parent() if record else None
        if old == new:
            return
        attachment_id = (record or previous).id
        if old is not None:
            self.writes.append(["SREM", self.keys.files(*old), attachment_id])
        if new is not None:
            self.writes.append(["SADD", self.keys.files(*new), attachment_id])

    def _announce(self, record: CrmRecord, op: CrmOp, origin: Origin) -> None:
        change = record.change(self.org_id, op, origin).model_dump_json()
        self.writes.append(["XADD", OUTBOX, "*", OUTBOX_FIELD, change])


_WRITTEN, _READ_AHEAD = "written", "read ahead"


class BatchView:
    """What one batch's units of work see besides Redis: the writes of those before them in the batch
    (not committed yet: they commit together), and the values read for the whole batch in one pipeline.

    Only the reads a transaction makes (GET, HGET, EXISTS) are answered; the writes that change their
    answers (SET, DEL, HSET, HDEL) are followed, the others (indexes, outbox) read by nobody here."""

    def __init__(self, read_ahead: dict[tuple, Any]):
        self.read_ahead = read_ahead
        self.values: dict[str, str | None] = {}  # key -> string value, None once deleted
        self.fields: dict[str, dict[str, str | None]] = {}  # hash -> field -> value
        self.cleared: set[str] = set()  # hashes deleted whole

    def lookup(self, read: tuple) -> tuple[str | None, Any]:
        """(_WRITTEN, value), (_READ_AHEAD, value) or (None, None): ask Redis."""
        command, name, *rest = read
        if command in ("GET", "EXISTS") and name in self.values:
            value = self.values[name]
            return _WRITTEN, (value if command == "GET" else int(value is not None))
        if command == "HGET" and rest[0] in self.fields.get(name, {}):
            return _WRITTEN, self.fields[name][rest[0]]
        if command == "HGET" and name in self.cleared:
            return _WRITTEN, None
        if read in self.read_ahead:
            return _READ_AHEAD, self.read_ahead[read]
        return None, None

    def follow(self, writes: list[list[str]]) -> None:
        for command, name, *rest in writes:
            if command == "SET":
                self.values[name] = rest[0]
            elif command == "DEL":
                for deleted in (name, *rest):
                    self.values[deleted] = None
                    self.fields[deleted] = {}
                    self.cleared.add(deleted)
            elif command == "HSET":
                self.fields.setdefault(name, {})[rest[0]] = rest[1]
            elif command == "HDEL":
                self.fields.setdefault(name, {})[rest[0]] = None


class CrmStore:
    def __init__(self, redis: aioredis.Redis, applied_ttl_s: int):
        self.redis = redis
        self.applied_ttl_s = applied_ttl_s
        self._commit = redis.register_script(_COMMIT)

    async def transaction(self, org_id: str, work: Callable[[CrmTransaction], Awaitable[T]]) -> T:
        """Run `work` and commit what it wrote atomically; run it again if what it read changed.

        Raises AlreadyApplied when the idempotency key `work` gave (`txn.once`) was committed before.
        """
        for _ in range(MAX_ATTEMPTS):
            txn = CrmTransaction(self.redis, org_id, self.applied_ttl_s)
            result = await work(txn)
            if not txn.writes:
                return result
            stale = await self._commit(args=[_json(txn.guards), _json(txn.writes)])
            if not stale:
                return result
            if txn.is_once_guard(stale - 1):
                raise AlreadyApplied()
        raise Contention(f"records of org {org_id} kept changing during {MAX_ATTEMPTS} attempts")

    async def transaction_batch(self, org_id: str, works: list[Callable[[CrmTransaction], Awaitable[T]]],
                                read_ahead: Callable[[], Awaitable[dict[tuple, Any]]]) -> list[T | BaseException]:
        """Run each of `works` as `transaction` would, in order, and commit them all in one script call:
        each sees what those before it wrote. A unit of work that raises (AlreadyApplied among others)
        writes nothing and its exception is its result; the others go on.

        `read_ahead()` answers, in one round trip, reads the units of work are about to make (guarded at
        the commit like any read). What was read changed meanwhile: the batch runs again, reading from
        Redis; an idempotency key committed meanwhile: that unit of work alone is AlreadyApplied."""
        settled: dict[int, BaseException] = {}
        ahead = await read_ahead()
        for _ in range(MAX_ATTEMPTS):
            view = BatchView(ahead)
            results: list[T | BaseException] = []
            guards, writes, owners = [], [], []  # owners: per guard, (unit of work, whether its once guard)
            for number, work in enumerate(works):
                if number in settled:
                    results.append(settled[number])
                    continue
                txn = CrmTransaction(self.redis, org_id, self.applied_ttl_s, view)
                try:
                    results.append(await work(txn))
                except Exception as exc:  # noqa: BLE001 - the unit of work's own outcome, told to its caller
                    results.append(exc)
                    continue
                owners.extend((number, txn.is_once_guard(g)) for g in range(len(txn.guards)))
                guards.extend(txn.guards)
                writes.extend(txn.writes)
                view.follow(txn.writes)
            if not writes:
                return results
            stale = await self._commit(args=[_json(guards), _json(writes)])
            if not stale:
                return results
            number, once = owners[stale - 1]
            if once:
                settled[number] = AlreadyApplied()
            ahead = {}
        raise Contention(f"records of org {org_id} kept changing during {MAX_ATTEMPTS} attempts")

    async def read_many(self, reads: list[tuple]) -> dict[tuple, Any]:
        """Each read (GET, or EXISTS, of a string key) with its answer, in one MGET: a pipeline of a
        command per read cost the CRM more than the commands themselves."""
        if not reads:
            return {}
        values = await self.redis.mget([name for _, name in reads])
        return {(command, name): (value if command == "GET" else int(value is not None))
                for (command, name), value in zip(reads, values)}

    async def applied(self, org_id: str, idempotency_key: str) -> bool:
        return bool(await self.redis.exists(OrgKeys(org_id).applied(idempotency_key)))

    # --- what the HTTP API lists ------------------------------------------------------------------
    async def record(self, org_id: str, module: CrmModule, record_id: str) -> CrmRecord | None:
        raw = await self.redis.get(OrgKeys(org_id).record(module, record_id))
        return CrmRecord.model_validate_json(raw) if raw else None

    async def records(self, org_id: str, module: CrmModule, offset: int, limit: int) -> list[CrmRecord]:
        keys = OrgKeys(org_id)
        ids = await self.redis.zrange(keys.index(module), offset, offset + limit - 1)
        return await self._records(keys, module, ids)

    async def emails(self, org_id: str, module: CrmModule, record_id: str) -> list[dict]:
        entries = await self.redis.hvals(OrgKeys(org_id).emails(module, record_id))
        return sorted((json.loads(e) for e in entries), key=lambda e: (e.get("date") or "", e["message_id"]))

    async def files(self, org_id: str, module: CrmModule, record_id: str) -> list[CrmRecord]:
        keys = OrgKeys(org_id)
        ids = sorted(await self.redis.smembers(keys.files(module, record_id)))
        return sorted(await self._records(keys, CrmModule.ATTACHMENTS, ids), key=lambda r: r.created_at)

    async def join_requests(self, org_id: str) -> list[dict]:
        entries = await self.redis.hvals(OrgKeys(org_id).join_requests())
        return sorted((json.loads(e) for e in entries), key=lambda r: r["requested_at"])

    async def _records(self, keys: OrgKeys, module: CrmModule, ids: list[str]) -> list[CrmRecord]:
        if not ids:
            return []
        raws = await self.redis.mget([keys.record(module, record_id) for record_id in ids])
        return [CrmRecord.model_validate_json(raw) for raw in raws if raw]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
