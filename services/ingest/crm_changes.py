"""POST /v1/crm/changes: signed batches of CRM record changes onto `crm.changes`, all or nothing."""
from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import CrmChange
from services.common.metrics import CHANGES_ACCEPTED
from services.common.topics import CRM_CHANGES
from services.ingest import signing
from services.ingest.context import IngestContext, ingest_context, read_limited_body
from services.ingest.problems import Problem, invalid_body

router = APIRouter(tags=["CRM"])


MAX_CHANGES_PER_REQUEST = 500


class CrmChangeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: list[CrmChange] = Field(min_length=1, max_length=MAX_CHANGES_PER_REQUEST)


def _refusal(exc: ValidationError, body: bytes) -> Problem:
    """400 for a body that is not JSON, 422 naming the fields otherwise (the batch size first)."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return Problem(400, "not-json", "Body is not JSON", f"the body is not valid JSON: {first['msg']}")
    if any(e["type"] == "too_long" and tuple(e["loc"]) == ("changes",) for e in exc.errors()):
        count = len(json.loads(body)["changes"])
        return Problem(422, "batch-too-large", "Too many changes",
                       f"changes holds {count} items, at most {MAX_CHANGES_PER_REQUEST} are allowed",
                       [{"field": "changes", "message": f"at most {MAX_CHANGES_PER_REQUEST} items"}])
    return invalid_body(exc)


class Accepted(BaseModel):
    accepted: int


@router.post(
    "/v1/crm/changes",
    status_code=202,
    response_model=Accepted,
    summary="Publish CRM record changes",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": CrmChangeBatch.model_json_schema()}}},
        "parameters": [
            {"name": signing.TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
            {"name": signing.SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
        ],
    },
)
async def publish_changes(request: Request, ctx: IngestContext = Depends(ingest_context)) -> Accepted:
    """Answers 202 only once every change is on the broker; a refused request publishes nothing."""
    settings = ctx.settings
    body = await read_limited_body(request, settings.max_body_bytes)
    try:
        signing.verify(
            settings.hmac_secret,
            request.headers.get(signing.TIMESTAMP_HEADER),
            request.headers.get(signing.SIGNATURE_HEADER),
            body,
            now=time.time(),
            tolerance_s=settings.signature_tolerance_s,
        )
    except signing.SignatureError as exc:
        raise Problem(401, "bad-signature", "Signature refused", str(exc)) from None
    try:
        batch = CrmChangeBatch.model_validate_json(body)
    except ValidationError as exc:
        raise _refusal(exc, body) from None
    try:
        await ctx.bus.publish_many(CRM_CHANGES.name, [(c.key, c) for c in batch.changes])
    except Exception as exc:  # noqa: BLE001 - any publish failure is the broker's: the CRM retries
        raise Problem(503, "broker-unavailable", "Broker unavailable", f"could not publish: {exc}",
                      headers={"Retry-After": "1"}) from None
    CHANGES_ACCEPTED.inc(len(batch.changes))
    return Accepted(accepted=len(batch.changes))
