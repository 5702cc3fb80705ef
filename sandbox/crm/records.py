"""A CRM record and how it changes, as pure functions: the store persists what these decide."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter, ValidationError

from schemas import ChangeSource, CrmChange, CrmModule, CrmOp
from schemas.base import Identifier

WRITABLE_MODULES = frozenset(
    {CrmModule.LEADS, CrmModule.CONTACTS, CrmModule.ACCOUNTS, CrmModule.DEALS, CrmModule.EVENTS,
     CrmModule.ATTACHMENTS}
)
"""What a person edits over the HTTP API. Users enter by invitation or an approved join request."""

PARENT_MODULE_FIELD = "Parent_Module"
PARENT_ID_FIELD = "Parent_Id"


class RecordNotFound(LookupError):
    def __init__(self, org_id: str, module: CrmModule, record_id: str):
        super().__init__(f"no {module.value} record {record_id!r} in org {org_id!r}")
        self.module, self.record_id = module, record_id


@dataclass(frozen=True)
class Origin:
    """Who caused a change: a person (ui, api, import...) or one of our commands (integration)."""

    source: ChangeSource
    correlation_id: str | None = None


class CrmRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    module: CrmModule
    id: str
    owner_id: str
    fields: dict[str, Any]
    external_ref: str | None = None
    created_at: AwareDatetime
    modified_at: AwareDatetime

    def change(self, org_id: str, op: CrmOp, origin: Origin) -> CrmChange:
        return CrmChange(
            org_id=org_id, module=self.module, record_id=self.id, op=op, owner_id=self.owner_id,
            source=origin.source, modified_at=self.modified_at, fields=self.fields,
            correlation_id=origin.correlation_id,
        )

    def attachment_parent(self) -> tuple[CrmModule, str] | None:
        """The record an attachment belongs to, when its parent fields name one that can exist."""
        if self.module != CrmModule.ATTACHMENTS:
            return None
        module, record_id = self.fields.get(PARENT_MODULE_FIELD), self.fields.get(PARENT_ID_FIELD)
        if module not in set(CrmModule) or not _is_identifier(record_id):
            return None
        return CrmModule(module), record_id


def new_record(
    module: CrmModule, owner_id: str, fields: dict[str, Any], external_ref: str | None, now: dt.datetime
) -> CrmRecord:
    return CrmRecord(module=module, id=uuid.uuid4().hex, owner_id=owner_id, fields=fields,
                     external_ref=external_ref, created_at=now, modified_at=now)


def edited(
    record: CrmRecord, owner_id: str | None, fields: dict[str, Any], external_ref: str | None, now: dt.datetime
) -> CrmRecord | None:
    """The record with `fields` merged in (a partial update), or None when that changes nothing."""
    merged = {**record.fields, **fields}
    owner = owner_id or record.owner_id
    ref = external_ref if external_ref is not None else record.external_ref
    if (merged, owner, ref) == (record.fields, record.owner_id, record.external_ref):
        return None
    return record.model_copy(
        update={"fields": merged, "owner_id": owner, "external_ref": ref, "modified_at": now})


_IDENTIFIER = TypeAdapter(Identifier)


def _is_identifier(value: Any) -> bool:
    try:
        _IDENTIFIER.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True
