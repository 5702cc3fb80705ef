"""Google Drive v3 in the sandbox: one store, its upload sessions and its own channel registry (the class
Calendar uses: Drive's changes.watch takes the same channel body and sends the same X-Goog headers), served
by the API routes; all cleared by `/_sandbox/reset`."""
from __future__ import annotations

from fastapi import APIRouter

from sandbox.google import drive_routes
from sandbox.google.channels import ChannelRegistry
from sandbox.google.drive_store import DriveStore
from sandbox.google.drive_uploads import Sessions

# A changes channel lives a week at most (https://developers.google.com/workspace/drive/api/guides/push).
CHANGES_CHANNEL_MAX_TTL_S = 7 * 24 * 3600


def routers(sandbox) -> list[APIRouter]:
    store, sessions = DriveStore(), Sessions()
    channels = ChannelRegistry(CHANGES_CHANNEL_MAX_TTL_S)
    for hook in (store.reset, sessions.reset, channels.reset):
        sandbox.state.on_reset(hook)
    sandbox.state.on_close(channels.aclose)
    control = APIRouter(prefix="/_sandbox/google/drive", tags=["sandbox control"])

    @control.get("/channels")
    def list_channels() -> list[dict]:
        """Every Drive changes channel opened since the last reset, its state and each delivery's outcome."""
        return channels.describe()

    return [drive_routes.router(sandbox, store, channels, sessions), control]
