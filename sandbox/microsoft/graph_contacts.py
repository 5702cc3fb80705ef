"""`/v1.0/users/{id}/contacts`, `/contactFolders`, `/contactFolders/{id}/contacts` and their `delta`.

As documented:
- contacts CRUD (https://learn.microsoft.com/graph/api/user-list-contacts, .../user-post-contacts,
  .../contact-get, .../contact-update, .../contact-delete): lists are 10 a page by default, `$top` up to
  1000, the rest behind `@odata.nextLink`; `/contacts` is the default Contacts folder, and an item id
  reaches a contact in any folder of the mailbox;
- singleValueExtendedProperties written like events', read with `$expand=singleValueExtendedProperties(
  $filter=id eq '...')`, found with `$filter=singleValueExtendedProperties/Any(...)`;
- delta per folder (https://learn.microsoft.com/graph/api/contact-delta): `$select` in the first call is
  kept in the state tokens, `Prefer: odata.maxpagesize` sizes pages, `@odata.nextLink` ($skiptoken) until
  the `@odata.deltaLink` ($deltatoken); a contact deleted or gone from the folder since comes back as
  `{"@odata.type": "#microsoft.graph.contact", "id", "@removed": {"reason": "deleted"}}`. `/contacts/delta`
  (the default folder, "equivalent" but undocumented: Microsoft Q&A 1634378) is served as well, and so is
  `/contactFolders/delta` (https://learn.microsoft.com/graph/api/contactfolder-delta): folders created or
  deleted since, the deleted as `@removed`.
A state token the sandbox no longer knows answers 410 SyncStateNotFound with a `Location` to a fresh
round, as calendarView/delta does; the control route that drops a user's delta tokens drops these too.
"""
from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from sandbox.errors import graph_error
from sandbox.microsoft.contact_model import render_contact
from sandbox.microsoft.contact_store import ContactStore
from sandbox.microsoft.event_store import EventStore
from sandbox.microsoft.graph_common import base_url, decode_token
from sandbox.microsoft.graph_delta import delta_answer, removed_item
from sandbox.microsoft.graph_events import expanded_property_ids, extended_property_filter, page_of
from sandbox.microsoft.graph_users import mailbox_owner, select

_DELTA_REFUSED = ("$filter", "$orderby", "$search", "$expand", "$top")
_ALWAYS_SELECTED = ("id", "@odata.etag", "singleValueExtendedProperties")
CONTACT_TYPE = "#microsoft.graph.contact"
FOLDER_TYPE = "#microsoft.graph.contactFolder"
FOLDERS = "contactFolders"  # what a contactFolders delta token tracks, in place of a folder id


def router(sandbox, contacts: ContactStore, events: EventStore) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph contacts"])

    def context(request: Request, user_id: str, tail: str) -> dict:
        return {"@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{user_id}')/{tail}"}

    def rendered(request: Request, record: dict) -> dict:
        params = request.query_params
        body = render_contact(record, expand_ids=expanded_property_ids(params.get("$expand")))
        return select(body, params.get("$select"), always=_ALWAYS_SELECTED)

    def owner(request: Request, user_id: str, folder_ref: str | None = None):
        _, account = mailbox_owner(sandbox, request, user_id)
        return account, contacts.folder_id(account.id, folder_ref)

    # --- contacts -----------------------------------------------------------------------------------
    @api.get("/users/{user_id}/contacts")
    @api.get("/me/contacts")
    @api.get("/users/{user_id}/contactFolders/{folder_ref}/contacts")
    @api.get("/me/contactFolders/{folder_ref}/contacts")
    async def list_contacts(request: Request, user_id: str = "me", folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        params = request.query_params
        if "$orderby" in params or "$search" in params:
            raise graph_error(400, "ErrorInvalidUrlQuery", "The sandbox does not emulate $orderby/$search on contacts.")
        keep = extended_property_filter(params.get("$filter"))
        page, next_link = page_of(request, [r for r in contacts.list(account.id, folder_id) if keep(r)])
        answer = {**context(request, account.id, "contacts"), "value": [rendered(request, r) for r in page]}
        if next_link:
            answer["@odata.nextLink"] = next_link
        return JSONResponse(answer)

    @api.post("/users/{user_id}/contacts", status_code=201)
    @api.post("/me/contacts", status_code=201)
    @api.post("/users/{user_id}/contactFolders/{folder_ref}/contacts", status_code=201)
    @api.post("/me/contactFolders/{folder_ref}/contacts", status_code=201)
    async def create_contact(request: Request, body: Annotated[dict, Body()], user_id: str = "me",
                             folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        record = contacts.create(account.id, folder_id, body)
        return JSONResponse({**context(request, account.id, "contacts/$entity"), **rendered(request, record)},
                            status_code=201)

    @api.get("/users/{user_id}/contacts/delta")
    @api.get("/me/contacts/delta")
    @api.get("/users/{user_id}/contactFolders/{folder_ref}/contacts/delta")
    @api.get("/me/contactFolders/{folder_ref}/contacts/delta")
    async def contacts_delta(request: Request, user_id: str = "me", folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        return delta_page(request, account.id, folder_id)

    @api.get("/users/{user_id}/contacts/{contact_id}")
    @api.get("/me/contacts/{contact_id}")
    @api.get("/users/{user_id}/contactFolders/{folder_ref}/contacts/{contact_id}")
    @api.get("/me/contactFolders/{folder_ref}/contacts/{contact_id}")
    async def get_contact(request: Request, contact_id: str, user_id: str = "me", folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        record = contacts.get(account.id, contact_id, folder_id if folder_ref else None)
        return {**context(request, account.id, "contacts/$entity"), **rendered(request, record)}

    @api.patch("/users/{user_id}/contacts/{contact_id}")
    @api.patch("/me/contacts/{contact_id}")
    @api.patch("/users/{user_id}/contactFolders/{folder_ref}/contacts/{contact_id}")
    @api.patch("/me/contactFolders/{folder_ref}/contacts/{contact_id}")
    async def update_contact(request: Request, contact_id: str, body: Annotated[dict, Body()], user_id: str = "me",
                             folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        record = contacts.update(account.id, contact_id, body, folder_id if folder_ref else None)
        return {**context(request, account.id, "contacts/$entity"), **rendered(request, record)}

    @api.delete("/users/{user_id}/contacts/{contact_id}", status_code=204)
    @api.delete("/me/contacts/{contact_id}", status_code=204)
    @api.delete("/users/{user_id}/contactFolders/{folder_ref}/contacts/{contact_id}", status_code=204)
    @api.delete("/me/contactFolders/{folder_ref}/contacts/{contact_id}", status_code=204)
    async def delete_contact(request: Request, contact_id: str, user_id: str = "me", folder_ref: str | None = None):
        account, folder_id = owner(request, user_id, folder_ref)
        contacts.delete(account.id, contact_id, folder_id if folder_ref else None)
        return Response(status_code=204)

    # --- folders ------------------------------------------------------------------------------------
    @api.get("/users/{user_id}/contactFolders")
    @api.get("/me/contactFolders")
    async def list_folders(request: Request, user_id: str = "me"):
        account, _ = owner(request, user_id)
        page, next_link = page_of(request, contacts.folders(account.id))
        answer = {**context(request, account.id, "contactFolders"),
                  "value": [select(f, request.query_params.get("$select")) for f in page]}
        if next_link:
            answer["@odata.nextLink"] = next_link
        return answer

    @api.post("/users/{user_id}/contactFolders", status_code=201)
    @api.post("/me/contactFolders", status_code=201)
    async def create_folder(request: Request, body: Annotated[dict, Body()], user_id: str = "me"):
        account, _ = owner(request, user_id)
        return {**context(request, account.id, "contactFolders/$entity"), **contacts.create_folder(account.id, body)}

    @api.get("/users/{user_id}/contactFolders/delta")
    @api.get("/me/contactFolders/delta")
    async def folders_delta(request: Request, user_id: str = "me"):
        account, _ = owner(request, user_id)
        since, upto, offset, token = round_bounds(request, account.id, FOLDERS)
        groups = []
        for folder_id, existed, folder in contacts.folders_changed(account.id, since, upto):
            if folder is not None:
                groups.append([{"@odata.type": FOLDER_TYPE, **select(folder, token.get("sel"))}])
            elif existed:
                groups.append([removed_item(folder_id, "deleted", FOLDER_TYPE)])
        state = {"u": account.id, "f": FOLDERS, "g": events.delta_generation(account.id), "sel": token.get("sel")}
        return delta_answer(request, groups, state, since, upto, offset, "contactFolder")

    @api.get("/users/{user_id}/contactFolders/{folder_ref}")
    @api.get("/me/contactFolders/{folder_ref}")
    async def get_folder(request: Request, folder_ref: str, user_id: str = "me"):
        account, _ = owner(request, user_id)
        return {**context(request, account.id, "contactFolders/$entity"), **contacts.folder(account.id, folder_ref)}

    @api.delete("/users/{user_id}/contactFolders/{folder_ref}", status_code=204)
    @api.delete("/me/contactFolders/{folder_ref}", status_code=204)
    async def delete_folder(request: Request, folder_ref: str, user_id: str = "me"):
        account, _ = owner(request, user_id)
        contacts.delete_folder(account.id, folder_ref)
        return Response(status_code=204)

    # --- delta --------------------------------------------------------------------------------------
    def read_token(request: Request, user_id: str, folder_id: str, name: str, *counters: str) -> dict:
        token = decode_token(request.query_params[name]) or {}
        generation = events.delta_generation(user_id)
        well_formed = all(isinstance(token.get(k), int) for k in ("q", *counters))
        if not well_formed or token.get("u") != user_id or token.get("f") != folder_id or token.get("g") != generation:
            raise graph_error(
                410, "SyncStateNotFound",
                f"The sync state generation is not found; generation={token.get('g')};[highest={generation}].",
                headers={"Location": f"{base_url(request)}{quote(request.url.path)}"},
            )
        return token

    def round_bounds(request: Request, user_id: str, folder_id: str) -> tuple[int, int, int, dict]:
        """(since, upto, offset, token) of this delta call: a first call, a next page or a new round."""
        params = request.query_params
        refused = [p for p in _DELTA_REFUSED if p in params]
        if refused:
            raise graph_error(400, "ErrorInvalidUrlQuery",
                              f"The following parameters are not supported with change tracking over the 'Contacts' "
                              f"resource: '{', '.join(refused)}'.")
        if "$skiptoken" in params:
            token = read_token(request, user_id, folder_id, "$skiptoken", "U", "o")
            return token["q"], token["U"], token["o"], token
        if "$deltatoken" in params:
            token = read_token(request, user_id, folder_id, "$deltatoken")
            return token["q"], contacts.seq, 0, token
        return 0, contacts.seq, 0, {"sel": params.get("$select")}

    def delta_page(request: Request, user_id: str, folder_id: str) -> JSONResponse:
        since, upto, offset, token = round_bounds(request, user_id, folder_id)
        groups = []
        for contact_id, was_in, now in contacts.changed_in_folder(user_id, folder_id, since, upto):
            if now is not None:
                groups.append([{"@odata.type": CONTACT_TYPE,
                                **select(render_contact(now), token.get("sel"), always=("id", "@odata.etag"))}])
            elif was_in:
                groups.append([removed_item(contact_id, "deleted", CONTACT_TYPE)])
        state = {"u": user_id, "f": folder_id, "g": events.delta_generation(user_id), "sel": token.get("sel")}
        return delta_answer(request, groups, state, since, upto, offset, "contact")

    return api
