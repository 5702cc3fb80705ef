"""What Calendar listings (events and the calendar list) share: boolean and page-size parameters, and page
and sync tokens, opaque to clients, a few numbers (a generation, a change number, an offset) to the sandbox. A token that does not decode, or whose
generation is gone, asks for a full sync as Google does (https://developers.google.com/calendar/api/guides/sync)."""
from __future__ import annotations

import base64
import binascii

from sandbox.errors import google_error
from sandbox.google.calendar_events import invalid


def full_sync_required():
    return google_error(
        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.",
        location="syncToken",
    )


def encode_numbers(*numbers: int) -> str:
    return base64.urlsafe_b64encode(".".join(map(str, numbers)).encode()).decode().rstrip("=")


def decode_numbers(token: str, count: int) -> list[int] | None:
    try:
        numbers = [int(n) for n in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(".")]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return numbers if len(numbers) == count and min(numbers) >= 0 else None


def decode_page_token(token: str) -> tuple[int, int]:
    numbers = decode_numbers(token, 2)
    if numbers is None:
        raise invalid("Invalid page token.", "pageToken")
    return numbers[0], numbers[1]


def flag(params, name: str) -> bool | None:
    """A boolean query parameter: None when absent, 400 when neither true nor false."""
    value = params.get(name)
    if value is not None and value not in ("true", "false"):
        raise invalid(f"Invalid value for: {name}", name)
    return None if value is None else value == "true"


def page_size(params, default: int, maximum: int) -> int:
    """`maxResults`: 400 below 1; above the maximum, served the maximum ("the page size can never be
    larger than ..." in both list references)."""
    if params.get("maxResults") is None:
        return default
    try:
        asked = int(params["maxResults"])
    except ValueError:
        raise invalid("Invalid value for: maxResults", "maxResults") from None
    if asked < 1:
        raise invalid(f"Invalid value '{asked}'. Values must be within the range: [1, {maximum}]", "maxResults")
    return min(asked, maximum)
