"""What calendar_sync's agents share in one process: Redis, the engine, providers, configurations.

The agents in worker.py stay short: each turns a message into one call here. Work for one user
integration is serialised by a per-scope lock, because the co-partitioned topics of one user
(configs, notifications, jobs, re-keyed CRM events) are handled by the same worker but by
different agents.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import datetime as dt
import json
import time
import uuid

from schemas import CrmCommand, Integration, IntegrationConfig, SyncJob, SyncJobKind, user_key
from services.calendar_sync.engine import CalendarEngine
from services.calendar_sync.ports import AuthFailed, CalendarProvider
from services.calendar_sync.providers import CalendarProviders
from services.calendar_sync.watches import Watches
from services.common.auth_status import mark_auth_failed
from services.common.logging import get_logger
from services.common.secrets import SecretBox
from services.common.settings import Settings
from services.common.state import IntegrationStatus, StatusStore, connect, key
from services.common.tokens import Grant, TokenStore
from services.common.topics import CRM_COMMANDS, SYNC_JOBS

log = get_logger(__name__)

CALENDAR_INTEGRATIONS = (Integration.GOOGLE_CALENDAR, Integration.MICROSOFT_CALENDAR)

# The deliveries of the CRM commands the current unit of work sent (see CalendarRuntime.unit_of_work).
_sent_commands: contextvars.ContextVar[list | None] = contextvars.ContextVar("sent_commands", default=None)


class ConfigView:
    """The worker's copy of each calendar configuration, from the compacted integration.configs topic."""

    def __init__(self, redis):
        self.redis = redis

    def _key(self, scope: str) -> str:
        return key("calcfg", *scope.split(":"))

    async def get(self, scope: str) -> IntegrationConfig | None:
        return self.parse(await self.redis.get(self._key(scope)))

    def parse(self, raw: str | None) -> IntegrationConfig | None:
        return IntegrationConfig.model_validate_json(raw) if raw else None

    async def get_many(self, scopes: list[str]) -> list[IntegrationConfig | None]:
        """Several scopes' configurations in one round trip (a CRM change concerns each calendar of its owner)."""
        raws = await self.redis.mget([self._key(scope) for scope in scopes]) if scopes else []
        return [self.parse(raw) for raw in raws]

    async def put(self, scope: str, config: IntegrationConfig | None) -> None:
        if config is None:
            await self.redis.delete(self._key(scope))
        else:
            await self.redis.set(self._key(scope), config.model_dump_json())


class CalendarRuntime:
    def __init__(self, settings: Settings, publish, send=None):
        self.settings = settings
        self.publish = publish  # (topic, key, message) -> awaitable, done once the broker has it
        self.send = send  # (topic, key, message) -> awaitable delivery: publish without waiting for it
        self.redis = connect(settings.redis_url)
        self.secrets = SecretBox(settings.fernet_key_list)
        self.tokens = TokenStore(self.redis, self.secrets)
        self.configs = ConfigView(self.redis)
        self.watches = Watches(self.redis, settings.public_base_url)
        self.engine = CalendarEngine(self.redis, self.publish_command)
        self.providers = CalendarProviders(settings, self.redis)
        self._locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._pull_began: dict[str, float] = {}  # scope -> when its last successful pull began (monotonic)
        self._jobs_holding: set[str] = set()  # scopes whose lock a sync job holds

    async def publish_command(self, command: CrmCommand) -> None:
        sent = _sent_commands.get()
        if sent is None or self.send is None:
            await self.publish(CRM_COMMANDS.name, command.org_id, command)
        else:
            sent.append(await self.send(CRM_COMMANDS.name, command.org_id, command))

    @contextlib.asynccontextmanager
    async def unit_of_work(self):
        """CRM commands sent inside go out without waiting for the broker one by one (a first sync's
        5,000 commands would each wait a round trip); leaving waits until the broker has them all, so
        the message is still acknowledged only after its commands are on the bus."""
        sent: list = []
        token = _sent_commands.set(sent)
        try:
            yield
        finally:
            _sent_commands.reset(token)
        if sent:  # not after a failure: the message is handled again, and its commands are idempotent
            await asyncio.gather(*sent)

    def lock(self, scope: str) -> asyncio.Lock:
        return self._locks[scope]

    def pulled_since(self, scope: str, moment: float) -> bool:
        """Whether a pull of the scope began after `moment` (monotonic) and succeeded: it took in every
        change the provider held at `moment`. A burst of edits sends a notification each; the first
        pull takes them all in, and the notifications queued behind it need no pull of their own."""
        return self._pull_began.get(scope, float("-inf")) > moment

    def job_holds(self, scope: str) -> bool:
        """Whether a sync job (a first sync may take minutes) holds the scope's lock now."""
        return scope in self._jobs_holding

    @contextlib.asynccontextmanager
    async def job_holding(self, scope: str):
        """Around a job, inside the scope's lock."""
        self._jobs_holding.add(scope)
        try:
            yield
        finally:
            self._jobs_holding.discard(scope)

    @contextlib.asynccontextmanager
    async def pulling(self, scope: str):
        """Around a pull: once it succeeded, notifications received before it began are covered."""
        began = time.monotonic()
        yield
        self._pull_began[scope] = max(began, self._pull_began.get(scope, began))

    async def config_and_grant(self, scope: str) -> tuple[IntegrationConfig | None, Grant | None]:
        """The scope's configuration and its user's grant in one round trip: a change or a notification
        needs both, and at 100 changes/s each round trip saved is one fewer wait per message."""
        parts = scope.split(":")
        if len(parts) != 3:  # no user integration's key: nothing configured under it
            return None, None
        raw, sealed = await self.redis.mget([self.configs._key(scope), self.tokens.key_of(*parts)])
        return self.configs.parse(raw), self.tokens.unseal(sealed)

    async def open_provider(self, config: IntegrationConfig, grant: Grant | None = None) -> tuple[CalendarProvider, str]:
        """The user's calendar at the provider, and the user's own address there (`grant`: as read
        already by config_and_grant)."""
        grant = grant or await self.tokens.get(config.org_id, config.user_id, config.integration.value)
        if grant is None:
            raise AuthFailed(f"{config.integration.value} is not connected: the user has to authorise it")
        return self.providers.open(config, grant), grant.account_email

    async def auth_failed(self, config: IntegrationConfig, reason: str) -> None:
        log.warning("authorisation failed", scope=config.key, reason=reason)
        await mark_auth_failed(self.redis, config.org_id, config.user_id, config.integration.value, reason)

    async def report(self, config: IntegrationConfig, state: str, reason: str) -> None:
        """A status the user must act on (a calendar they cannot write to), shown by the admin API."""
        log.warning("integration needs attention", scope=config.key, state=state, reason=reason)
        await StatusStore(self.redis).set(config.org_id, config.user_id, config.integration.value,
                                          IntegrationStatus(state, reason, time.time()))

    async def request_job(self, config: IntegrationConfig, kind: SyncJobKind, reason: str,
                          job_id: str | None = None) -> None:
        job = SyncJob(job_id=job_id or uuid.uuid4().hex, org_id=config.org_id, user_id=config.user_id,
                      integration=config.integration, kind=kind, reason=reason,
                      requested_at=dt.datetime.now(dt.UTC))
        await self.publish(SYNC_JOBS.name, job.key, job)

    async def store_preview(self, job_id: str, preview: dict) -> None:
        name = key("calpreview", job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(name, json.dumps(preview))
            pipe.expire(name, 300)
            await pipe.execute()


def scope_of(record_key: bytes | None) -> str:
    return (record_key or b"").decode()


def calendar_scopes(org_id: str, owner_id: str) -> list[str]:
    return [user_key(org_id, owner_id, integration.value) for integration in CALENDAR_INTEGRATIONS]
