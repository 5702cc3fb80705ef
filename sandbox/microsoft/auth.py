"""Bearer-token check shared by every Graph route the sandbox serves."""
from __future__ import annotations

from fastapi import Request

from sandbox.errors import graph_error
from sandbox.state import Grant


def graph_grant(sandbox, request: Request) -> Grant:
    """The grant behind the request's access token: delegated (a user) or app-only (a tenant)."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    grant = sandbox.state.grant_for_access_token(token) if token else None
    if grant is None:
        raise graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
    return grant
