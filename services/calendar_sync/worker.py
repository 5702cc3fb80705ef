"""calendar_sync's streams: each agent hands a message to the runtime and the engine, nothing more.

  crm.changes              index every CRM event and contact; re-key calendar-relevant changes by owner
                           (and by the previous owner, whose calendar loses an event moved away)
  calendar_sync.crm_events a user's CRM event changes, in order: pushed to the provider at once
  provider.notifications   a push from Google or Graph: pull the user's changes since the cursor
  integration.configs      enable (first sync + channel), disable (stop; Microsoft: delete synced events)
  sync.jobs                full resyncs, channel renewals, previews
A timer turns channels about to expire into renewal jobs.
"""
from __future__ import annotations

import asyncio
import time

import mode

from schemas import (
    CrmChange,
    CrmModule,
    Direction,
    Integration,
    IntegrationConfig,
    NotificationKind,
    ProviderNotification,
    SyncJob,
    SyncJobKind,
)
from services.calendar_sync.ports import AuthFailed, NotWritable
from services.calendar_sync.runtime import CALENDAR_INTEGRATIONS, CalendarRuntime, calendar_scopes, scope_of
from services.common.auth_status import mark_ok
from services.common.logging import get_logger
from services.common.settings import get_settings
from services.common.topics import (
    CRM_CHANGES,
    INTEGRATION_CONFIGS,
    PROVIDER_NOTIFICATIONS,
    SYNC_JOBS,
    TopicSpec,
)
from services.common.worker import FaustPublisher, handled_agent, new_worker_app, run_worker
from services.providers.google.client import warm_threads

NAME = "calendar_sync"
log = get_logger(__name__)
CRM_EVENTS = TopicSpec("calendar_sync.crm_events", purpose="CRM event changes re-keyed org:owner:integration")
WATCH_RENEWAL_MARGIN_S = 3600.0
# An echo skips its pull only while the user's delta token was used this recently: a calendar only we
# write to still pulls now and then, so the token never ages out (a 410 would cost a full resync).
ECHO_SKIP_MAX_S = 600.0

settings = get_settings()
app = new_worker_app(NAME, settings)
publisher = FaustPublisher(app)
runtime = CalendarRuntime(settings, publisher.publish, publisher.send)


async def index_crm_change(change: CrmChange, record) -> None:
    """Index the change; hand it to its owner's calendars, and to those of the owner it moved away from."""
    seen = await runtime.engine.observe_crm_change(change)
    if seen.echo or change.module != CrmModule.EVENTS:
        return
    scopes = [scope for owner in seen.owners for scope in calendar_scopes(change.org_id, owner)]
    for scope, config in zip(scopes, await runtime.configs.get_many(scopes)):
        if config is not None and config.enabled:
            await publisher.publish(CRM_EVENTS.name, scope, change)


async def push_crm_event(change: CrmChange, record) -> None:
    config, grant = await runtime.config_and_grant(scope_of(record.key))
    if config is None or not config.enabled:
        return
    async with runtime.lock(config.key), runtime.unit_of_work():
        try:
            provider, _ = await runtime.open_provider(config, grant)
            await runtime.engine.push_crm_change(config, change, provider)
        except AuthFailed as exc:
            await runtime.auth_failed(config, str(exc))


async def pull_on_notification(notification: ProviderNotification, record) -> None:
    if notification.integration not in CALENDAR_INTEGRATIONS:
        return
    config, grant = await runtime.config_and_grant(notification.key)
    if config is None or not config.enabled:
        return
    lifecycle = notification.kind == NotificationKind.LIFECYCLE
    if not lifecycle and config.direction == Direction.CRM_TO_PROVIDER:
        return
    if not lifecycle and runtime.job_holds(config.key):
        # A job (a first sync: minutes) holds the user's lock. A job queued behind it pulls afterwards,
        # and this agent goes on with the other users instead of waiting.
        await runtime.request_job(config, SyncJobKind.INCREMENTAL, "provider changes during a sync job")
        return
    async with runtime.lock(config.key), runtime.unit_of_work():
        if not lifecycle and runtime.pulled_since(config.key, record.received_at):
            return  # a pull begun after this notification arrived has taken its change in
        if not lifecycle and notification.change_type != "deleted" \
                and runtime.pulled_since(config.key, time.monotonic() - ECHO_SKIP_MAX_S) \
                and await runtime.engine.is_own_echo(config, notification.item_id, notification.item_etag):
            return  # our own write's echo: the next pull brings it and drops it; no delta round for it alone
        try:
            provider, address = await runtime.open_provider(config, grant)
            if lifecycle:
                await _lifecycle(config, provider, notification)
            async with runtime.pulling(config.key):
                await runtime.engine.pull(config, provider, address)
        except AuthFailed as exc:
            await runtime.auth_failed(config, str(exc))


async def _lifecycle(config: IntegrationConfig, provider, notification: ProviderNotification) -> None:
    """reauthorizationRequired: renew; subscriptionRemoved: open again; missed: the pull that follows."""
    if notification.lifecycle_event in ("reauthorizationRequired", "subscriptionRemoved"):
        await runtime.watches.renew(config, provider)


async def apply_config(config: IntegrationConfig | None, record) -> None:
    scope = scope_of(record.key)
    if not any(scope.endswith(":" + i.value) for i in CALENDAR_INTEGRATIONS):
        return
    async with runtime.lock(scope):
        previous = await runtime.configs.get(scope)
        await runtime.configs.put(scope, config)
        was_on = previous is not None and previous.enabled
        if config is not None and config.enabled and (not was_on or _sync_terms_changed(previous, config)):
            await runtime.request_job(config, SyncJobKind.FULL, "enabled")
        elif was_on and (config is None or not config.enabled):
            await runtime.request_job(previous, SyncJobKind.DISABLE, "disabled")


def _sync_terms_changed(previous: IntegrationConfig, config: IntegrationConfig) -> bool:
    return (previous.target_id, previous.direction) != (config.target_id, config.direction)


async def run_job(job: SyncJob, record) -> None:
    if job.integration not in CALENDAR_INTEGRATIONS:
        return
    config = await runtime.configs.get(job.key)
    if job.kind == SyncJobKind.DISABLE:
        config = config or _disabled_placeholder(job)
    if config is None:
        return
    async with runtime.lock(config.key), runtime.job_holding(config.key), runtime.unit_of_work():
        if job.kind == SyncJobKind.INCREMENTAL and runtime.pulled_since(config.key, record.received_at):
            return  # several notifications during one first sync: one pull after it
        try:
            await _run(job, config)
        except AuthFailed as exc:
            await runtime.auth_failed(config, str(exc))
        except NotWritable as exc:
            await runtime.report(config, "invalid_target", str(exc))


async def _run(job: SyncJob, config: IntegrationConfig) -> None:
    if job.kind == SyncJobKind.DISABLE:
        await _disable(config)
        return
    provider, address = await runtime.open_provider(config)
    if job.kind == SyncJobKind.PREVIEW:
        await runtime.store_preview(job.job_id, await runtime.engine.whole.preview(config, provider))
        return
    if not config.enabled:
        return
    if job.kind == SyncJobKind.FULL:
        await _check_target_writable(config, provider)
        async with runtime.pulling(config.key):
            await runtime.engine.whole.full_sync(config, provider, address, reason=job.reason or "requested")
        if config.direction != Direction.CRM_TO_PROVIDER:
            await runtime.watches.ensure(config, provider)
        await mark_ok(runtime.redis, config.org_id, config.user_id, config.integration.value)
    elif job.kind == SyncJobKind.INCREMENTAL:
        async with runtime.pulling(config.key):
            await runtime.engine.pull(config, provider, address)
    elif job.kind == SyncJobKind.RENEW_WATCH:
        await runtime.watches.renew(config, provider)


async def _check_target_writable(config: IntegrationConfig, provider) -> None:
    target = config.target_id or "primary"
    writable = await provider.writable_calendars()
    if target != "primary" and target not in writable:
        raise NotWritable(f"calendar {target!r} is not one the user can write to")


async def _disable(config: IntegrationConfig) -> None:
    """Google: stop the channel, leave both sides. Microsoft: also delete the synced events there."""
    try:
        provider, _ = await runtime.open_provider(config)
    except AuthFailed:
        provider = None
    await runtime.watches.close(config, provider)
    if config.integration == Integration.MICROSOFT_CALENDAR and provider is not None:
        await runtime.engine.whole.remove_synced_events(config, provider)


def _disabled_placeholder(job: SyncJob) -> IntegrationConfig:
    return IntegrationConfig(org_id=job.org_id, user_id=job.user_id, integration=job.integration,
                             updated_at=job.requested_at)


@app.service
class ProviderPools(mode.Service):
    """Warms the Google client threads when the worker starts; closes the providers' HTTP pools (Graph's
    aiohttp session) when it stops."""

    async def on_started(self) -> None:
        # In the background: the agents start at once, and a call made meanwhile warms its own thread.
        self._warming = asyncio.get_running_loop().run_in_executor(
            None, warm_threads, settings, "calendar", "v3", ("events", "calendarList", "channels"))
        self._warming.add_done_callback(_log_warming)

    async def on_stop(self) -> None:
        await runtime.providers.aclose()


def _log_warming(done: asyncio.Future) -> None:
    if done.cancelled() or done.exception() is not None:
        log.warning("google client threads not warmed", error=None if done.cancelled() else repr(done.exception()))
    else:
        log.info("google client threads warmed", threads=done.result())


@app.timer(interval=300.0)
async def renew_expiring_watches() -> None:
    for scope in await runtime.watches.expiring(WATCH_RENEWAL_MARGIN_S):
        config = await runtime.configs.get(scope)
        if config is not None and config.enabled:
            await runtime.request_job(config, SyncJobKind.RENEW_WATCH, "channel expires soon")


# Every topic here is keyed by what must stay in order (a CRM record, a user integration): other users'
# messages need not wait while one user's first sync or pull waits on its provider.
for spec, model, handle in ((CRM_CHANGES, CrmChange, index_crm_change), (CRM_EVENTS, CrmChange, push_crm_event),
                            (PROVIDER_NOTIFICATIONS, ProviderNotification, pull_on_notification),
                            (INTEGRATION_CONFIGS, IntegrationConfig, apply_config), (SYNC_JOBS, SyncJob, run_job)):
    handled_agent(app, spec, model, handle, worker=NAME, settings=settings, concurrency=settings.keyed_concurrency)


def main() -> None:
    run_worker(app, settings, NAME, extra_topics=(CRM_EVENTS,))
