"""Error bodies in the shapes the real providers send, so client libraries parse them as they would."""
from __future__ import annotations

from fastapi.responses import JSONResponse

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ProviderError(Exception):
    """Raised inside a sandbox handler; turned into the provider's error response by the app."""

    def __init__(self, response: JSONResponse):
        super().__init__(response.body)
        self.response = response


def google_error(
    code: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> ProviderError:
    """Google's JSON error body (https://developers.google.com/calendar/api/guides/errors)."""
    item: dict[str, str] = {"domain": domain, "reason": reason, "message": message}
    if location:
        item["location"] = location
        item["locationType"] = location_type or "parameter"
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [item],
            "status": _GOOGLE_STATUS.get(code, "UNKNOWN"),
        }
    }
    return ProviderError(JSONResponse(body, status_code=code, headers=headers))


def graph_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> ProviderError:
    """Graph's JSON error body (https://learn.microsoft.com/graph/errors)."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": "sandbox", "date": "1970-01-01T00:00:00"},
        }
    }
    return ProviderError(JSONResponse(body, status_code=status, headers=headers))


def oauth_error(error: str, description: str, status: int = 400) -> ProviderError:
    """RFC 6749 section 5.2 token endpoint error, as both Google and Microsoft identity send it."""
    return ProviderError(
        JSONResponse({"error": error, "error_description": description}, status_code=status)
    )
