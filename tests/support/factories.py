"""Valid messages for tests, varied only where a test says so."""
from __future__ import annotations

import datetime as dt
import uuid

from schemas import ChangeSource, CrmChange, CrmModule, CrmOp


def unique_org() -> str:
    return "org-" + uuid.uuid4().hex[:10]


def crm_change(org_id: str | None = None, record_id: str | None = None, **overrides) -> CrmChange:
    values = dict(
        org_id=org_id or unique_org(),
        module=CrmModule.EVENTS,
        record_id=record_id or "rec-" + uuid.uuid4().hex[:8],
        op=CrmOp.CREATED,
        owner_id="user-1",
        source=ChangeSource.UI,
        modified_at=dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc),
        fields={"Event_Title": "Demo", "Start_DateTime": "2026-11-24T10:00:00+01:00"},
    )
    values.update(overrides)
    return CrmChange(**values)
