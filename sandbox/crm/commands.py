"""crm.commands applied to the CRM, each idempotency key once: the writebacks of the integrations.

A command's effects, its idempotency marker and the changes it causes commit in one transaction that
only succeeds while the marker is absent, so a repeat (a redelivery, a retry by the issuer, a second
CRM process) changes and announces nothing.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from sandbox.crm import edits
from sandbox.crm.records import PARENT_ID_FIELD, PARENT_MODULE_FIELD, Origin, RecordNotFound
from sandbox.crm.store import AlreadyApplied, CrmStore, CrmTransaction
from schemas import (
    AttachEmail,
    ChangeSource,
    CrmCommand,
    CrmModule,
    DeleteRecord,
    InviteUser,
    JoinRequest,
    LinkFile,
    UpsertRecord,
)


async def apply_command(store: CrmStore, command: CrmCommand) -> bool:
    """Apply `command`; False when its idempotency key was applied before (nothing done).

    Raises RecordNotFound when it acts on a record the CRM does not have (deleted meanwhile).
    """
    origin = Origin(ChangeSource.INTEGRATION, command.correlation_id)
    apply_action = _ACTIONS[type(command.action)]

    async def work(txn: CrmTransaction) -> None:
        txn.once(command.idempotency_key, command.correlation_id)
        await apply_action(txn, command.action, origin)

    try:
        await store.transaction(command.org_id, work)
    except AlreadyApplied:
        return False
    except RecordNotFound:
        # A repeat of a command applied before its record was deleted is a repeat, not an error.
        if await store.applied(command.org_id, command.idempotency_key):
            return False
        raise
    return True


async def _upsert_record(txn: CrmTransaction, action: UpsertRecord, origin: Origin) -> None:
    if action.record_id is not None:
        current = await edits.existing(txn, action.module, action.record_id)
    elif action.external_ref is not None:
        current = await txn.record_by_ref(action.module, action.external_ref)
    else:
        current = None
    edits.put(txn, current, action.module, action.owner_id, action.fields, action.external_ref, origin)


async def _delete_record(txn: CrmTransaction, action: DeleteRecord, origin: Origin) -> None:
    """Deleting what is already gone succeeds and announces nothing."""
    current = await txn.record(action.module, action.record_id)
    if current is not None:
        txn.remove(current, origin)


async def _attach_email(txn: CrmTransaction, action: AttachEmail, origin: Origin) -> None:
    """Once per message id per record. A related-list entry, not a record: no change is announced."""
    await edits.existing(txn, action.module, action.record_id)
    if not await txn.has_email(action.module, action.record_id, action.message_id):
        entry = action.model_dump(mode="json", exclude={"kind", "schema_version", "module", "record_id"})
        entry["attached_at"] = txn.now.isoformat()
        txn.add_email(action.module, action.record_id, action.message_id, entry)


async def _link_file(txn: CrmTransaction, action: LinkFile, origin: Origin) -> None:
    """An Attachments record in the parent's files related list, once per file per parent."""
    parent = await edits.existing(txn, action.module, action.record_id)
    fields = {
        PARENT_MODULE_FIELD: action.module.value, PARENT_ID_FIELD: action.record_id,
        "File_Name": action.name, "Mime_Type": action.mime_type, "Size": action.size,
        "Drive_File_Id": action.file_id, "Link_Url": action.web_link,
    }
    external_ref = f"{action.module.value}/{action.record_id}/{action.file_id}"
    await edits.put_by_ref(txn, CrmModule.ATTACHMENTS, external_ref, parent.owner_id, fields, origin)


async def _invite_user(txn: CrmTransaction, action: InviteUser, origin: Origin) -> None:
    await edits.add_user(txn, action.email, action.display_name, action.directory_user_id,
                         action.invited_by, edits.USER_INVITED, origin)


async def _join_request(txn: CrmTransaction, action: JoinRequest, origin: Origin) -> None:
    """Kept pending for the admins (GET /v1/orgs/{org}/join-requests) until one approves it."""
    if await txn.join_request(action.directory_user_id) is None:
        request = action.model_dump(mode="json", exclude={"kind", "schema_version"})
        request.update(status="pending", requested_at=txn.now.isoformat())
        txn.put_join_request(action.directory_user_id, request)


_ACTIONS: dict[type, Callable[[CrmTransaction, object, Origin], Awaitable[None]]] = {
    UpsertRecord: _upsert_record,
    DeleteRecord: _delete_record,
    AttachEmail: _attach_email,
    LinkFile: _link_file,
    InviteUser: _invite_user,
    JoinRequest: _join_request,
}
