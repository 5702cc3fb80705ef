"""An org's mail settings (admin API): whether a record that gets a new address is also given the mail
already fetched that carries it ("re-linking"). Off by default: as in the seeds' product, a changed
address links only the mail that arrives after the change.

Re-linking needs the fetched mail kept, and mail_fetch keeps it only while the setting is on (bounded:
the newest messages per address, for a number of days). The answer says so, so an admin knows that
mail fetched before turning it on cannot be re-linked.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from services.ingest.admin import OrgId, require_admin
from services.ingest.context import IngestContext, ingest_context
from services.mail_fetch.kept_mail import KEEP_PER_ADDRESS, KEEP_S
from services.mail_fetch.org_settings import OrgMailSettings

router = APIRouter(prefix="/v1/orgs", tags=["admin"], dependencies=[Depends(require_admin)])


class MailSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    relink_earlier_mail: bool


def _view(org_id: str, relink: bool) -> dict:
    return {
        "org_id": org_id,
        "relink_earlier_mail": relink,
        "relinkable_mail": {"kept_while_on": True, "newest_per_address": KEEP_PER_ADDRESS,
                            "days": KEEP_S // 86_400},
    }


@router.put("/{org_id}/mail-settings")
async def put_mail_settings(org_id: OrgId, body: MailSettingsRequest,
                            ctx: IngestContext = Depends(ingest_context)) -> dict:
    """Turn re-linking of earlier mail on or off for the whole org; mail_fetch reads it on every batch."""
    await OrgMailSettings(ctx.redis).set_relink(org_id, body.relink_earlier_mail)
    return _view(org_id, body.relink_earlier_mail)


@router.get("/{org_id}/mail-settings")
async def get_mail_settings(org_id: OrgId, ctx: IngestContext = Depends(ingest_context)) -> dict:
    return _view(org_id, await OrgMailSettings(ctx.redis).relinks(org_id))
