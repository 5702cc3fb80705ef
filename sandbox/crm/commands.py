"""crm.commands applied to the CRM, each idempotency key once: the writebacks of the integrations.

A command's effects, its idempotency marker and the changes it causes commit in one transaction that
only succeeds while the marker is absent, so a repeat (a redelivery, a retry by the issuer, a second
CRM process) changes and announces nothing.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from sandbox.crm import edits
from sandbox.crm.records import PARENT_ID_FIELD, PARENT_MODULE_FIELD, Origin, RecordNotFound
from sandbox.crm.store import AlreadyApplied, CrmStore, CrmTransaction, OrgKeys
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


def _unit_of_work(command: CrmCommand) -> Callable[[CrmTransaction], Awaitable[None]]:
    origin = Origin(ChangeSource.INTEGRATION, command.correlation_id)
    apply_action = _ACTIONS[type(command.action)]

    async def work(txn: CrmTransaction) -> None:
        txn.once(command.idempotency_key, command.correlation_id)
        await apply_action(txn, command.action, origin)

    return work


async def apply_commands(store: CrmStore, commands: list[CrmCommand]) -> list[bool | Exception]:
    """Apply `commands` in order, each org's in one commit (a first sync's thousands of creations were a
    commit, and two or three round trips, each); per command, what `apply_command` returns, or the
    exception it would raise unchecked: RecordNotFound here may be a repeat, told apart by `apply_command`.
    The reads the commands make first (applied yet? the record, or its external ref) go in one pipeline."""
    results: list[bool | Exception] = [False] * len(commands)
    by_org: dict[str, list[int]] = {}
    for number, command in enumerate(commands):
        by_org.setdefault(command.org_id, []).append(number)
    for org_id, numbers in by_org.items():
        batch = [commands[n] for n in numbers]
        outcomes = await store.transaction_batch(org_id, [_unit_of_work(c) for c in batch],
                                                 lambda batch=batch, org_id=org_id: _read_ahead(store, org_id, batch))
        for number, outcome in zip(numbers, outcomes):
            results[number] = (False if isinstance(outcome, AlreadyApplied) else
                               outcome if isinstance(outcome, Exception) else True)
    return results


async def _read_ahead(store: CrmStore, org_id: str, commands: list[CrmCommand]) -> dict[tuple, object]:
    """The reads the commands start with, in two round trips: whether each was applied, and the record
    an upsert or a delete acts on (by its id, or by its external ref, then by the id that names)."""
    keys = OrgKeys(org_id)
    first: list[tuple] = [("EXISTS", keys.applied(c.idempotency_key)) for c in commands]
    by_ref: list[tuple[CrmModule, tuple]] = []
    for command in commands:
        action = command.action
        if isinstance(action, (UpsertRecord, DeleteRecord)) and action.record_id is not None:
            first.append(("GET", keys.record(action.module, action.record_id)))
        elif isinstance(action, UpsertRecord) and action.external_ref is not None:
            by_ref.append((action.module, ("GET", keys.ref(action.module, action.external_ref))))
    answers = await store.read_many(first + [read for _, read in by_ref])
    referred = [("GET", keys.record(module, answers[read])) for module, read in by_ref if answers[read]]
    return answers | await store.read_many(referred)


async def apply_command(store: CrmStore, command: CrmCommand) -> bool:
    """Apply `command`; False when its idempotency key was applied before (nothing done).

    Raises RecordNotFound when it acts on a record the CRM does not have (deleted meanwhile).
    """
    try:
        await store.transaction(command.org_id, _unit_of_work(command))
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
