"""`/v1.0/users/{id}/calendars` and `/calendar`: the calendars of a mailbox, read-only.

Every sandbox mailbox has the two calendars a new Outlook mailbox shows: its default "Calendar", which
the user can edit and where `/users/{id}/events` lives, and a subscribed holiday calendar it cannot edit
(`canEdit: false`), so that a client choosing a target calendar has one to refuse. Properties as in
https://learn.microsoft.com/graph/api/resources/calendar; listing as in
https://learn.microsoft.com/graph/api/user-list-calendars.
"""
from __future__ import annotations

import base64
import hashlib

from fastapi import APIRouter, Request

from sandbox.errors import graph_error
from sandbox.microsoft.graph_common import base_url
from sandbox.microsoft.graph_users import mailbox_owner, select
from sandbox.state import Account


def _calendar_id(account: Account, name: str) -> str:
    """Stable opaque ids, in the AAMk... shape of Outlook's."""
    digest = hashlib.sha256(f"{account.id}:{name}".encode()).digest()
    return "AAMkAGI" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def calendars(account: Account) -> list[dict]:
    owner = {"name": account.display_name, "address": account.email}
    common = {"canShare": True, "canViewPrivateItems": True, "isRemovable": False,
              "isTallyingResponses": True,
              "allowedOnlineMeetingProviders": ["teamsForBusiness"],
              "defaultOnlineMeetingProvider": "teamsForBusiness"}
    default = {"id": _calendar_id(account, "Calendar"), "name": "Calendar", "color": "auto", "hexColor": "",
               "isDefaultCalendar": True, "changeKey": "default", "canEdit": True, "owner": owner, **common}
    holidays = {"id": _calendar_id(account, "Holidays"), "name": "United States holidays",
                "color": "lightGreen", "hexColor": "#87d28e", "isDefaultCalendar": False,
                "changeKey": "holidays", "canEdit": False, "owner": owner, **common,
                "canShare": False, "isRemovable": True, "isTallyingResponses": False}
    return [default, holidays]


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph calendars"])

    @api.get("/users/{user_id}/calendars")
    @api.get("/me/calendars")
    async def list_calendars(request: Request, user_id: str = "me") -> dict:
        _, account = mailbox_owner(sandbox, request, user_id)
        if "$filter" in request.query_params or "$orderby" in request.query_params:
            raise graph_error(400, "ErrorInvalidUrlQuery",
                              "The sandbox does not emulate $filter/$orderby on calendars.")
        return {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account.id}')/calendars",
            "value": [select(c, request.query_params.get("$select")) for c in calendars(account)],
        }

    @api.get("/users/{user_id}/calendar")
    @api.get("/me/calendar")
    async def default_calendar(request: Request, user_id: str = "me") -> dict:
        _, account = mailbox_owner(sandbox, request, user_id)
        entity = f"{base_url(request)}/v1.0/$metadata#users('{account.id}')/calendars/$entity"
        context = {"@odata.context": entity}
        return {**context, **select(calendars(account)[0], request.query_params.get("$select"))}

    return api
