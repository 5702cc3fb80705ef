"""Calendar-specific admin endpoints: a preview before enabling, the list of two-way clashes, and the
org's calendar settings (whether a participant list a CRM user changed may mail the participants).

Ingest never calls a provider itself: a preview is a `preview` SyncJob that the calendar worker
answers through Redis; ingest waits for that answer with a deadline.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from schemas import Integration, IntegrationConfig, SyncJob, SyncJobKind, user_key
from services.calendar_sync.store import OrgCalendarSettings
from services.common.state import ConfigStore, key
from services.common.topics import SYNC_JOBS
from services.ingest.admin import OrgId, UserId, require_admin
from services.ingest.context import IngestContext, ingest_context
from services.ingest.problems import Problem

router = APIRouter(prefix="/v1/orgs", tags=["admin"], dependencies=[Depends(require_admin)])

CALENDARS = (Integration.GOOGLE_CALENDAR, Integration.MICROSOFT_CALENDAR)
PREVIEW_TIMEOUT_S = 60


def _calendar(integration: Integration) -> Integration:
    if integration not in CALENDARS:
        raise Problem(404, "not-a-calendar", "Not a calendar integration",
                      f"{integration.value} has no preview or conflicts; calendars: "
                      f"{', '.join(i.value for i in CALENDARS)}")
    return integration


@router.post("/{org_id}/users/{user_id}/integrations/{integration}/preview")
async def preview(org_id: OrgId, user_id: UserId, integration: Integration,
                  ctx: IngestContext = Depends(ingest_context)) -> dict:
    """How many events enabling would create, update, link and delete on each side; writes nothing."""
    _calendar(integration)
    scope = user_key(org_id, user_id, integration.value)
    stored = await ConfigStore(ctx.redis).get(scope)
    if stored is None:
        raise Problem(404, "no-configuration", "No configuration",
                      f"PUT the {integration.value} configuration (enabled false) before asking for a preview")
    config = IntegrationConfig.model_validate_json(stored)
    job = SyncJob(job_id=uuid.uuid4().hex, org_id=org_id, user_id=user_id, integration=integration,
                  kind=SyncJobKind.PREVIEW, reason="admin preview", requested_at=dt.datetime.now(dt.UTC))
    await ctx.bus.publish(SYNC_JOBS.name, job.key, job)
    answer = await ctx.redis.blpop([key("calpreview", job.job_id)], timeout=PREVIEW_TIMEOUT_S)
    if answer is None:
        raise Problem(504, "preview-timeout", "Preview not ready",
                      f"the calendar worker did not answer within {PREVIEW_TIMEOUT_S} s; is it running?")
    return {"integration": integration.value, "enabled": config.enabled, **json.loads(answer[1])}


@router.get("/{org_id}/users/{user_id}/integrations/{integration}/conflicts")
async def conflicts(org_id: OrgId, user_id: UserId, integration: Integration,
                    limit: int = Query(100, ge=1, le=500), ctx: IngestContext = Depends(ingest_context)) -> dict:
    """Fields edited on both sides since the last sync, and which side won (newest first)."""
    _calendar(integration)
    parts = user_key(org_id, user_id, integration.value).split(":")
    raw = await ctx.redis.lrange(key("calconflicts", *parts), 0, limit - 1)
    return {"conflicts": [json.loads(entry) for entry in raw]}


class CalendarSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notify_participants_on_change: bool


def _settings_view(org_id: str, notify: bool) -> dict:
    return {"org_id": org_id, "notify_participants_on_change": notify}


@router.put("/{org_id}/calendar-settings")
async def put_calendar_settings(org_id: OrgId, body: CalendarSettingsRequest,
                                ctx: IngestContext = Depends(ingest_context)) -> dict:
    """Whether a change a CRM user makes to an event's participants mails them (Google sendUpdates=all;
    Outlook: the attendees are written, which invites them). Off by default: a sync mails nobody."""
    await OrgCalendarSettings(ctx.redis).set_notify_participants(org_id, body.notify_participants_on_change)
    return _settings_view(org_id, body.notify_participants_on_change)


@router.get("/{org_id}/calendar-settings")
async def get_calendar_settings(org_id: OrgId, ctx: IngestContext = Depends(ingest_context)) -> dict:
    return _settings_view(org_id, await OrgCalendarSettings(ctx.redis).notifies_participants(org_id))
