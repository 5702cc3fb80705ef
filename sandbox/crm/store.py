"""The CRM's records in Redis, written in transactions that also queue the changes to announce.

A write reads what it depends on (watched), decides, then commits the records, the indexes, the
idempotency marker and the outbox entries of its changes in one MULTI/EXEC: two CRM processes, or one
restarted half way, never apply a command twice nor lose the change a write made. The outbox is
drained to ingest by `outbox.ChangePublisher`.

Keys, under the project's scheme (`services.common.state.key`), per org:
  crm:<org>:record:<module>:<id>     the record (JSON)
  crm:<org>:records:<module>         index of the module's records (sorted set, by creation time)
  crm:<org>:ref:<module>:<digest>    record id of an external_ref (refs are provider ids: hashed)
  crm:<org>:applied:<digest>         an idempotency key applied, with its correlation id
  crm:<org>:emails:<module>:<id>     the record's emails related list (hash: message id -> entry)
  crm:<org>:files:<module>:<id>      the record's files related list (set of Attachments ids)
  crm:<org>:join-requests            pending join requests (hash: directory user id -> request)
and crm-outbox, one stream of changes waiting for ingest, in commit order.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from sandbox.crm.records import CrmRecord, Origin
from schemas import CrmModule, CrmOp
from services.common.state import key

T = TypeVar("T")

OUTBOX = key("crm-outbox")
OUTBOX_FIELD = "change"


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
    """One org's reads (each watched) and then its writes, queued until `commit`.

    Reads must all come before the first write is committed; the store retries the whole unit of
    work when a watched key changed meanwhile, so a unit of work must be free of other side effects.
    """

    def __init__(self, pipe: Pipeline, org_id: str, applied_ttl_s: int):
        self.pipe = pipe
        self.org_id = org_id
        self.keys = OrgKeys(org_id)
        self.now = dt.datetime.now(dt.UTC)
        self._applied_ttl_s = applied_ttl_s
        self._writes: list[Callable[[Pipeline], Any]] = []

    # --- reads ------------------------------------------------------------------------------------
    async def applied(self, idempotency_key: str) -> bool:
        name = self.keys.applied(idempotency_key)
        await self.pipe.watch(name)
        return bool(await self.pipe.exists(name))

    async def record(self, module: CrmModule, record_id: str) -> CrmRecord | None:
        name = self.keys.record(module, record_id)
        await self.pipe.watch(name)
        raw = await self.pipe.get(name)
        return CrmRecord.model_validate_json(raw) if raw else None

    async def record_by_ref(self, module: CrmModule, external_ref: str) -> CrmRecord | None:
        name = self.keys.ref(module, external_ref)
        await self.pipe.watch(name)
        record_id = await self.pipe.get(name)
        return await self.record(module, record_id) if record_id else None

    async def has_email(self, module: CrmModule, record_id: str, message_id: str) -> bool:
        name = self.keys.emails(module, record_id)
        await self.pipe.watch(name)
        return bool(await self.pipe.hexists(name, message_id))

    async def join_request(self, directory_user_id: str) -> dict | None:
        name = self.keys.join_requests()
        await self.pipe.watch(name)
        raw = await self.pipe.hget(name, directory_user_id)
        return json.loads(raw) if raw else None

    # --- writes -----------------------------------------------------------------------------------
    def save(self, record: CrmRecord, previous: CrmRecord | None, origin: Origin) -> None:
        """Create or update `record` and announce it."""
        keys, module = self.keys, record.module
        self._writes.append(lambda p: p.set(keys.record(module, record.id), record.model_dump_json()))
        if previous is None:
            score = record.created_at.timestamp()
            self._writes.append(lambda p: p.zadd(keys.index(module), {record.id: score}))
        if previous is not None and previous.external_ref not in (None, record.external_ref):
            self._writes.append(lambda p: p.delete(keys.ref(module, previous.external_ref)))
        if record.external_ref is not None:
            self._writes.append(lambda p: p.set(keys.ref(module, record.external_ref), record.id))
        self._link_to_parent(record, previous)
        self._announce(record, CrmOp.CREATED if previous is None else CrmOp.UPDATED, origin)

    def remove(self, record: CrmRecord, origin: Origin) -> None:
        """Delete `record` with its related lists and announce it."""
        keys, module = self.keys, record.module
        self._writes.append(lambda p: p.delete(keys.record(module, record.id), keys.emails(module, record.id),
                                               keys.files(module, record.id)))
        self._writes.append(lambda p: p.zrem(keys.index(module), record.id))
        if record.external_ref is not None:
            self._writes.append(lambda p: p.delete(keys.ref(module, record.external_ref)))
        self._link_to_parent(None, record)
        self._announce(record.model_copy(update={"modified_at": self.now}), CrmOp.DELETED, origin)

    def add_email(self, module: CrmModule, record_id: str, message_id: str, entry: dict) -> None:
        name, value = self.keys.emails(module, record_id), json.dumps(entry)
        self._writes.append(lambda p: p.hset(name, message_id, value))

    def put_join_request(self, directory_user_id: str, request: dict) -> None:
        name, value = self.keys.join_requests(), json.dumps(request)
        self._writes.append(lambda p: p.hset(name, directory_user_id, value))

    def drop_join_request(self, directory_user_id: str) -> None:
        name = self.keys.join_requests()
        self._writes.append(lambda p: p.hdel(name, directory_user_id))

    def mark_applied(self, idempotency_key: str, correlation_id: str) -> None:
        name, ttl = self.keys.applied(idempotency_key), self._applied_ttl_s
        self._writes.append(lambda p: p.set(name, correlation_id, ex=ttl))

    def _link_to_parent(self, record: CrmRecord | None, previous: CrmRecord | None) -> None:
        """Keep an attachment in its parent's files related list, following a change of parent."""
        old = previous.attachment_parent() if previous else None
        new = record.attachment_parent() if record else None
        if old == new:
            return
        attachment_id = (record or previous).id
        if old is not None:
            self._writes.append(lambda p: p.srem(self.keys.files(*old), attachment_id))
        if new is not None:
            self._writes.append(lambda p: p.sadd(self.keys.files(*new), attachment_id))

    def _announce(self, record: CrmRecord, op: CrmOp, origin: Origin) -> None:
        entry = {OUTBOX_FIELD: record.change(self.org_id, op, origin).model_dump_json()}
        self._writes.append(lambda p: p.xadd(OUTBOX, entry))

    def commit(self) -> None:
        self.pipe.multi()
        for write in self._writes:
            write(self.pipe)


class CrmStore:
    def __init__(self, redis: aioredis.Redis, applied_ttl_s: int):
        self.redis = redis
        self.applied_ttl_s = applied_ttl_s

    async def transaction(self, org_id: str, work: Callable[[CrmTransaction], Awaitable[T]]) -> T:
        """Run `work` and commit what it wrote atomically; run it again if what it read changed."""

        async def attempt(pipe: Pipeline) -> T:
            txn = CrmTransaction(pipe, org_id, self.applied_ttl_s)
            result = await work(txn)
            txn.commit()
            return result

        return await self.redis.transaction(attempt, value_from_callable=True)

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
