"""Google Calendar v3 in the sandbox: one store and one channel registry, served by the API routes and
the control routes, both cleared by `/_sandbox/reset`."""
from __future__ import annotations

from fastapi import APIRouter

from sandbox.google import calendar_control, calendar_routes
from sandbox.google.calendar_store import CalendarStore
from sandbox.google.channels import ChannelRegistry


def routers(sandbox) -> list[APIRouter]:
    store = CalendarStore()
    channels = ChannelRegistry(sandbox.config.google_channel_default_ttl_s)
    sandbox.state.on_reset(store.reset)
    sandbox.state.on_reset(channels.reset)
    sandbox.state.on_close(channels.aclose)
    # The API first: the router tries included routers in order, and API calls are the hot path.
    return [
        calendar_routes.router(sandbox, store, channels),
        calendar_control.router(sandbox, store, channels),
    ]
