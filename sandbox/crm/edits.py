"""What a person or a command does to records: units of work run inside a store transaction.

The HTTP API and the command consumer share them, so a record created by either is the same record.
"""
from __future__ import annotations

from typing import Any

from sandbox.crm.records import CrmRecord, Origin, RecordNotFound, edited, new_record
from sandbox.crm.store import CrmTransaction
from schemas import CrmModule

USER_INVITED = "invited"
USER_ACTIVE = "active"


async def existing(txn: CrmTransaction, module: CrmModule, record_id: str) -> CrmRecord:
    record = await txn.record(module, record_id)
    if record is None:
        raise RecordNotFound(txn.org_id, module, record_id)
    return record


def put(
    txn: CrmTransaction, current: CrmRecord | None, module: CrmModule, owner_id: str | None,
    fields: dict[str, Any], external_ref: str | None, origin: Origin,
) -> CrmRecord:
    """Create a record (no `current`) or merge `fields` into it; only a real change is saved and announced."""
    if current is None:
        if owner_id is None:
            raise ValueError("a new record needs an owner")
        record = new_record(module, owner_id, fields, external_ref, txn.now)
        txn.save(record, None, origin)
        return record
    updated = edited(current, owner_id, fields, external_ref, txn.now)
    if updated is None:
        return current
    txn.save(updated, current, origin)
    return updated


async def put_by_ref(
    txn: CrmTransaction, module: CrmModule, external_ref: str, owner_id: str, fields: dict[str, Any],
    origin: Origin, initial_fields: dict[str, Any] | None = None,
) -> CrmRecord:
    """Update the record that already carries `external_ref`, else create it (with `initial_fields`):
    what keeps a re-enabled sync, a re-linked file or a re-invited user from making a duplicate."""
    current = await txn.record_by_ref(module, external_ref)
    if current is None and initial_fields:
        fields = {**initial_fields, **fields}
    return put(txn, current, module, owner_id, fields, external_ref, origin)


async def add_user(
    txn: CrmTransaction, email: str, display_name: str, directory_user_id: str, added_by: str,
    status: str, origin: Origin,
) -> CrmRecord:
    """A Users record for a directory user; `status` is set only when the user is new."""
    fields = {"Email": email, "Full_Name": display_name, "Directory_User_Id": directory_user_id}
    return await put_by_ref(txn, CrmModule.USERS, directory_user_id, added_by, fields, origin,
                            initial_fields={"Status": status})
