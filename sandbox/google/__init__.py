"""Google API emulators. `routers(sandbox)` returns the FastAPI routers this package serves."""
from __future__ import annotations

from sandbox.google import batch, calendar, drive, gmail, oauth


def routers(sandbox) -> list:
    return [
        *calendar.routers(sandbox),
        batch.router(sandbox, api="calendar/v3", max_parts=1000),
        oauth.router(sandbox),
        *gmail.routers(sandbox),
        *drive.routers(sandbox),
        # Drive allows 100 calls a batch (https://developers.google.com/workspace/drive/api/guides/performance#batch).
        batch.router(sandbox, api="drive/v3", max_parts=100),
    ]
