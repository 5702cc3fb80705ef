"""Microsoft API emulators: identity platform v2.0 (for MSAL) and Graph v1.0 (users, calendars, events,
calendar view and delta, contacts and their folders and delta, subscriptions with notifications, JSON batching). `routers(sandbox)` returns them all.

Per-account data lives in memory in the stores made here; each registers with `sandbox.state.on_reset`
so that `/_sandbox/reset` clears it. Route handlers are `async def`: the stores are in memory and answer in
well under a millisecond, less than a hop to the threadpool costs (measured: 225 -> 390 creates/s); the
stores still hold a lock, for the threads that deliver notifications and for any sync caller.
"""
from __future__ import annotations


def routers(sandbox) -> list:
    from sandbox.microsoft import (
        graph_batch,
        graph_calendar_events,
        graph_calendars,
        graph_contacts,
        graph_delta,
        graph_events,
        graph_mailbox_settings,
        graph_subscriptions,
        graph_users,
        identity,
    )
    from sandbox.microsoft.contact_store import ContactStore
    from sandbox.microsoft.event_store import EventStore
    from sandbox.microsoft.notifications import Courier, count_call

    events = EventStore(directory=lambda address: sandbox.state.account_by_email("microsoft", address))
    contacts = ContactStore()
    courier = Courier(count=lambda name: count_call(sandbox.faults, name))
    sandbox.state.on_reset(events.reset)
    sandbox.state.on_reset(contacts.reset)
    sandbox.state.on_reset(courier.reset)
    return [
        identity.router(sandbox),
        graph_users.router(sandbox),
        graph_calendars.router(sandbox),
        graph_calendar_events.router(sandbox),
        graph_mailbox_settings.router(sandbox),
        graph_events.router(sandbox, events),
        graph_events.control_router(sandbox, events),
        graph_delta.router(sandbox, events),
        graph_contacts.router(sandbox, contacts, events),
        graph_subscriptions.router(sandbox, events, courier, contacts),
        graph_batch.router(sandbox),
    ]
