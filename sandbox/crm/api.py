"""The CRM's HTTP API: what a person (or a test acting as one) does in the CRM.

Every write is announced on crm.changes through ingest with the source the request names (ui by
default; api, import, migration or bulk_update when a test needs records that entered that way) and
no correlation id. The answer comes once the write is committed; its change follows within
milliseconds, as a real CRM's webhook does. Errors are problem+json naming what is wrong.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox.crm import edits
from sandbox.crm.records import WRITABLE_MODULES, CrmRecord, Origin, RecordNotFound
from sandbox.crm.store import Contention, CrmStore, CrmTransaction
from schemas import ChangeSource, CrmModule
from schemas.base import Identifier
from services.ingest.problems import Problem, install_problem_handlers

MAX_BULK = 500


def _not_integration(source: ChangeSource) -> ChangeSource:
    if source == ChangeSource.INTEGRATION:
        raise ValueError("integration is the source of changes made by crm.commands, not by a person")
    return source


PersonSource = Annotated[ChangeSource, AfterValidator(_not_integration)]
OrgId = Annotated[Identifier, Path(description="CRM org id")]
RecordId = Annotated[Identifier, Path(description="record id")]
Fields = Annotated[dict[str, Any], Field(description="field name -> value; an update merges these in")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRecord(Body):
    owner_id: Identifier
    fields: Fields


class CreateRecord(NewRecord):
    source: PersonSource = ChangeSource.UI


class UpdateRecord(Body):
    owner_id: Identifier | None = None
    fields: Fields = Field(default_factory=dict)
    source: PersonSource = ChangeSource.UI


class CreateRecords(Body):
    records: list[NewRecord] = Field(min_length=1, max_length=MAX_BULK)
    source: PersonSource = ChangeSource.IMPORT


class BulkUpdate(Body):
    record_ids: list[Identifier] = Field(min_length=1, max_length=MAX_BULK)
    fields: Fields
    source: PersonSource = ChangeSource.BULK_UPDATE


class Approval(Body):
    approved_by: Identifier


# Dependencies are coroutines: FastAPI would run plain functions on its thread pool, a hop per request.
async def crm_store(request: Request) -> CrmStore:
    return request.app.state.store


async def writable(module: Annotated[CrmModule, Path(description="Leads, Contacts, Accounts, Deals, Events...")]):
    if module not in WRITABLE_MODULES:
        raise Problem(422, "module-not-writable", "Module not writable",
                      f"module {module.value} is not written over this API (users come by invitation)",
                      [{"field": "path.module", "message": f"one of {sorted(m.value for m in WRITABLE_MODULES)}"}])
    return module


Store = Annotated[CrmStore, Depends(crm_store)]
WritableModule = Annotated[CrmModule, Depends(writable)]

router = APIRouter(prefix="/v1/orgs/{org}", tags=["CRM"])


def view(record: CrmRecord) -> dict:
    return record.model_dump(mode="json")


@router.post("/modules/{module}/records", status_code=201)
async def create_record(org: OrgId, module: WritableModule, body: CreateRecord, store: Store) -> dict:
    origin = Origin(body.source)

    async def work(txn: CrmTransaction) -> CrmRecord:
        return edits.put(txn, None, module, body.owner_id, body.fields, None, origin)

    return view(await store.transaction(org, work))


@router.post("/modules/{module}/records/bulk", status_code=201, summary="Create several records at once")
async def create_records(org: OrgId, module: WritableModule, body: CreateRecords, store: Store) -> dict:
    origin = Origin(body.source)

    async def work(txn: CrmTransaction) -> list[CrmRecord]:
        return [edits.put(txn, None, module, r.owner_id, r.fields, None, origin) for r in body.records]

    return {"records": [view(r) for r in await store.transaction(org, work)]}


@router.post("/modules/{module}/bulk-update", summary="Set the same fields on several records, all or none")
async def bulk_update(org: OrgId, module: WritableModule, body: BulkUpdate, store: Store) -> dict:
    origin = Origin(body.source)

    async def work(txn: CrmTransaction) -> list[CrmRecord]:
        currents = [await edits.existing(txn, module, record_id) for record_id in body.record_ids]
        return [edits.put(txn, current, module, None, body.fields, None, origin) for current in currents]

    return {"records": [view(r) for r in await store.transaction(org, work)]}


@router.patch("/modules/{module}/records/{record_id}")
async def update_record(org: OrgId, module: WritableModule, record_id: RecordId, body: UpdateRecord,
                        store: Store) -> dict:
    origin = Origin(body.source)

    async def work(txn: CrmTransaction) -> CrmRecord:
        current = await edits.existing(txn, module, record_id)
        return edits.put(txn, current, module, body.owner_id, body.fields, None, origin)

    return view(await store.transaction(org, work))


@router.delete("/modules/{module}/records/{record_id}", status_code=204)
async def delete_record(org: OrgId, module: WritableModule, record_id: RecordId, store: Store,
                        source: Annotated[PersonSource, Query()] = ChangeSource.UI) -> Response:
    async def work(txn: CrmTransaction) -> None:
        txn.remove(await edits.existing(txn, module, record_id), Origin(source))

    await store.transaction(org, work)
    return Response(status_code=204)


@router.get("/modules/{module}/records")
async def list_records(org: OrgId, module: CrmModule, store: Store,
                       offset: Annotated[int, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    records = await store.records(org, module, offset, limit)
    return {"records": [view(r) for r in records],
            "next_offset": offset + len(records) if len(records) == limit else None}


@router.get("/modules/{module}/records/{record_id}", summary="A record with its emails and files related lists")
async def get_record(org: OrgId, module: CrmModule, record_id: RecordId, store: Store,
                     viewer: Annotated[Identifier | None, Query(description="hide others' private mail")] = None,
                     ) -> dict:
    record = await store.record(org, module, record_id)
    if record is None:
        raise RecordNotFound(org, module, record_id)
    emails = [e for e in await store.emails(org, module, record_id)
              if viewer is None or e["visibility"] == "shared" or e["owner_id"] == viewer]
    files = await store.files(org, module, record_id)
    return {**view(record), "emails": emails, "files": [view(f) for f in files]}


@router.get("/join-requests", summary="Directory users asking to join, pending an admin's approval")
async def join_requests(org: OrgId, store: Store) -> dict:
    return {"join_requests": await store.join_requests(org)}


@router.post("/join-requests/{directory_user_id}/approve", status_code=201)
async def approve_join_request(org: OrgId, directory_user_id: Annotated[str, Path(max_length=1024)],
                               body: Approval, store: Store) -> dict:
    """An admin lets the user in: a Users record (active) is created and the request is gone."""

    async def work(txn: CrmTransaction) -> CrmRecord:
        request = await txn.join_request(directory_user_id)
        if request is None:
            raise Problem(404, "join-request-not-found", "No such join request",
                          f"no pending join request of directory user {directory_user_id!r} in org {org!r}")
        txn.drop_join_request(directory_user_id)
        return await edits.add_user(txn, request["email"], request["display_name"], directory_user_id,
                                    body.approved_by, edits.USER_ACTIVE, Origin(ChangeSource.UI))

    return view(await store.transaction(org, work))


def create_api(store: CrmStore) -> FastAPI:
    app = FastAPI(title="crmsync reference CRM", version="1",
                  description="A stand-in CRM: records per org, writebacks from crm.commands, changes to ingest.")
    app.state.store = store
    install_problem_handlers(app)
    app.include_router(router)

    @app.exception_handler(RecordNotFound)
    async def _not_found(request: Request, exc: RecordNotFound):
        return Problem(404, "record-not-found", "Record not found", str(exc)).response(request.url.path)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(Contention)
    async def _store_unavailable(request: Request, exc: Exception):
        return Problem(503, "store-unavailable", "Store unavailable", f"try again: {exc}",
                       headers={"Retry-After": "1"}).response(request.url.path)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    return app
