"""`/v1.0/users/{id}/mailboxSettings`: the mailbox's settings, of which the sandbox keeps the time zone.

As Graph (https://learn.microsoft.com/graph/api/user-get-mailboxsettings, .../user-update-mailboxsettings):
GET answers the settings with `timeZone` (a Windows name such as "W. Europe Standard Time", or an IANA
one when so set); PATCH sets the properties it carries and answers them. A new mailbox's zone is "UTC".
A zone name the time zone table does not know is refused as event writes refuse it
(400 TimeZoneNotSupportedException).
"""
from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Body, Request

from sandbox.microsoft.graph_common import base_url
from sandbox.microsoft.graph_users import mailbox_owner
from sandbox.microsoft.timezones import zone

_DEFAULT_ZONE = "UTC"


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph mailbox settings"])
    zones: dict[str, str] = {}
    lock = threading.Lock()

    def reset() -> None:
        with lock:
            zones.clear()

    sandbox.state.on_reset(reset)

    def settings(request: Request, account_id: str) -> dict:
        with lock:
            time_zone = zones.get(account_id, _DEFAULT_ZONE)
        return {"@odata.context": f"{base_url(request)}/v1.0/$metadata#users('{account_id}')/mailboxSettings",
                "timeZone": time_zone}

    @api.get("/users/{user_id}/mailboxSettings")
    @api.get("/me/mailboxSettings")
    async def get_settings(request: Request, user_id: str = "me") -> dict:
        _, account = mailbox_owner(sandbox, request, user_id)
        return settings(request, account.id)

    @api.patch("/users/{user_id}/mailboxSettings")
    @api.patch("/me/mailboxSettings")
    async def update_settings(request: Request, body: Annotated[dict, Body()], user_id: str = "me") -> dict:
        _, account = mailbox_owner(sandbox, request, user_id)
        if "timeZone" in body:
            name = body["timeZone"]
            zone(name if isinstance(name, str) else "")  # refuses a name it does not know
            with lock:
                zones[account.id] = name
        return settings(request, account.id)

    return api
