"""`/v1.0/users`, `/v1.0/users/{id}`, `/v1.0/me`, and who may act on which user's mailbox.

Paging as the directory does it (https://learn.microsoft.com/graph/api/user-list): 100 a page by
default, `$top` up to 999, the rest behind `@odata.nextLink` with an opaque `$skiptoken`.
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from sandbox.errors import graph_error
from sandbox.microsoft.auth import graph_grant
from sandbox.microsoft.graph_common import base_url, decode_token, encode_token, int_param
from sandbox.state import Account, Grant

USERS_PAGE_DEFAULT, USERS_PAGE_MAX = 100, 999


def find_user(sandbox, user_ref: str) -> Account | None:
    """A Microsoft account by object id or userPrincipalName, as Graph addresses users."""
    account = sandbox.state.accounts.get(user_ref)
    if account is not None and account.provider == "microsoft":
        return account
    return sandbox.state.account_by_email("microsoft", user_ref)


def _directory_not_found(user_ref: str):
    return graph_error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{user_ref}' does not exist or one of its queried reference-property objects are not present.",
    )


def _mailbox_not_found(user_ref: str):
    return graph_error(404, "ErrorInvalidUser", f"The requested user '{user_ref}' is invalid.")


def _resolve(sandbox, grant: Grant, user_ref: str, *, mailbox: bool) -> Account:
    if user_ref == "me":
        if grant.account_id is None:
            raise graph_error(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        user_ref = grant.account_id
    account = find_user(sandbox, user_ref)
    # A user of another tenant does not exist as far as this token can see.
    if account is None or account.tenant_id != grant.tenant_id:
        raise (_mailbox_not_found if mailbox else _directory_not_found)(user_ref)
    return account


def mailbox_owner(sandbox, request: Request, user_ref: str) -> tuple[Grant, Account]:
    """The user whose mailbox (events, subscriptions) the call touches, if the token may touch it.

    An app-only token reaches every mailbox of its tenant; a delegated one only its own user's
    (this sandbox grants no Calendars.ReadWrite.Shared): 403 ErrorAccessDenied otherwise.
    """
    grant = graph_grant(sandbox, request)
    account = _resolve(sandbox, grant, user_ref, mailbox=True)
    if grant.account_id is not None and grant.account_id != account.id:
        raise graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return grant, account


def user_resource(account: Account) -> dict:
    given, _, surname = account.display_name.partition(" ")
    return {
        "businessPhones": [],
        "displayName": account.display_name,
        "givenName": given or None,
        "jobTitle": None,
        "mail": account.email,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": surname or None,
        "userPrincipalName": account.email,
        "id": account.id,
    }


def select(resource: dict, select_param: str | None, always: tuple[str, ...] = ("id",)) -> dict:
    """`$select=a,b`: only those properties (and the ones Graph always sends)."""
    if not select_param:
        return resource
    wanted = {name.strip() for name in select_param.split(",")} | set(always)
    return {k: v for k, v in resource.items() if k in wanted or k.startswith("@odata.")}


def router(sandbox) -> APIRouter:
    api = APIRouter(prefix="/v1.0", tags=["graph users"])

    @api.get("/users")
    async def list_users(request: Request) -> dict:
        grant = graph_grant(sandbox, request)
        params = request.query_params
        if "$filter" in params or "$search" in params or "$orderby" in params:
            raise graph_error(400, "Request_UnsupportedQuery", "The sandbox does not emulate $filter/$search/$orderby on users.")
        top = int_param(params.get("$top"), "$top", USERS_PAGE_DEFAULT, USERS_PAGE_MAX, "Request_BadRequest")
        offset = 0
        if "$skiptoken" in params:
            token = decode_token(params["$skiptoken"]) or {}
            if token.get("tenant") != grant.tenant_id or not isinstance(token.get("offset"), int):
                raise graph_error(400, "Directory_ExpiredPageToken", "The specified page token value has expired and can no longer be included in your request.")
            offset, top = token["offset"], token["top"]
        with sandbox.state.lock:
            members = sorted(
                (a for a in sandbox.state.accounts.values() if a.provider == "microsoft" and a.tenant_id == grant.tenant_id),
                key=lambda a: a.email.lower(),
            )
        page = members[offset : offset + top]
        answer = {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#users",
            "value": [select(user_resource(a), params.get("$select")) for a in page],
        }
        if offset + top < len(members):
            token = encode_token({"tenant": grant.tenant_id, "offset": offset + top, "top": top})
            answer["@odata.nextLink"] = f"{base_url(request)}/v1.0/users?$top={top}&$skiptoken={token}"
        return answer

    @api.get("/users/{user_id}")
    @api.get("/me")
    async def get_user(request: Request, user_id: str = "me") -> dict:
        grant = graph_grant(sandbox, request)
        account = _resolve(sandbox, grant, user_id, mailbox=False)
        resource = select(user_resource(account), request.query_params.get("$select"))
        return {"@odata.context": f"{base_url(request)}/v1.0/$metadata#users/$entity", **resource}

    return api
