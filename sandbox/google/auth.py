"""Bearer-token check shared by every Google API the sandbox serves."""
from __future__ import annotations

from fastapi import Request

from sandbox.asgi_headers import header as header_value
from sandbox.errors import google_error
from sandbox.state import Account, Grant


def google_account(sandbox, request: Request) -> Account:
    """The account whose access token the request carries; 401 as Google answers otherwise."""
    return google_caller(sandbox, request)[0]


def google_caller(sandbox, request: Request) -> tuple[Account, Grant]:
    """The account and the grant (which OAuth client, i.e. which app) behind the request's token."""
    header = header_value(request.scope, b"authorization") or ""
    token = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("access_token", "")
    grant = sandbox.state.grant_for_access_token(token) if token else None
    if grant is None or grant.account_id is None:
        raise google_error(
            401,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
            "or other valid authentication credential.",
            location="Authorization",
            location_type="header",
        )
    account = sandbox.state.accounts.get(grant.account_id)
    if account is None or account.provider != "google":
        raise google_error(401, "authError", "Invalid Credentials", location="Authorization", location_type="header")
    return account, grant
