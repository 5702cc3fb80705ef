"""The life of one mailbox this worker owns: fetch on its interval, back off while its server is
down, report `auth_failed` with the reason and wait for a new configuration, pause while its owner is
a deactivated CRM user, and stop between two messages when asked. A mailbox that is disabled or
removed is also released: what the provider keeps for it (Gmail's watch) is ended.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Protocol

from schemas import IntegrationConfig, Pop3Mailbox
from services.common.logging import get_logger
from services.common.metrics import INTEGRATION_STATUS
from services.common.retry import TransientError
from services.common.state import IntegrationStatus, StatusStore
from services.mail_fetch.address_index import AddressIndex
from services.mail_fetch.mail_state import MailboxLock

log = get_logger(__name__)

DEFAULT_GMAIL_POLL_S = 300.0  # Gmail pushes; the poll only catches what a lost push would miss
MAX_BACKOFF_S = 600.0


class MailboxAuthFailed(Exception):
    """The provider refused our credentials: only a new configuration (or consent) can fix it."""


class MailFetcher(Protocol):
    async def fetch(self, config: IntegrationConfig, stopping: threading.Event) -> int:
        """Fetch what is new, stopping between two messages once `stopping` is set; returns the count."""

    async def release(self, config: IntegrationConfig) -> None:
        """The mailbox is disabled or removed: end what the provider keeps for it (idempotent)."""


class MailboxPoller:
    def __init__(self, config: IntegrationConfig, fetcher: MailFetcher, statuses: StatusStore, index: AddressIndex,
                 lock: MailboxLock, min_interval_s: float = 0.0):
        self.config = config
        self.fetcher = fetcher
        self.statuses = statuses
        self.index = index
        self.lock = lock
        self.min_interval_s = min_interval_s
        self.stopping = threading.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._failures = 0
        self._auth_failed_config: IntegrationConfig | None = None
        self._last_state: tuple[str, str] | None = None

    # --- control ------------------------------------------------------------------------------
    def start(self) -> MailboxPoller:
        self._task = asyncio.create_task(self._run(), name=f"mailbox {self.config.key}")
        return self

    def update(self, config: IntegrationConfig) -> None:
        """A new configuration: fetch now (this is how a mailbox leaves auth_failed)."""
        self.config = config
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def retry_now(self) -> None:
        """New credentials outside the configuration (a Gmail mailbox connected again): leave
        auth_failed and fetch now."""
        self._auth_failed_config = None
        self._wake.set()

    async def stop(self) -> None:
        self.stopping.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def remove(self) -> None:
        """The mailbox's configuration was deleted or points elsewhere now: stop, and release it."""
        await self.stop()
        await self._release()
        log.info("mailbox removed", mailbox=self.config.key, source=self.config.mailbox.kind)

    async def _release(self) -> None:
        try:
            await self.fetcher.release(self.config)
        except Exception:  # best effort: a watch left open lapses by itself
            log.warning("mailbox not released", mailbox=self.config.key, exc_info=True)

    # --- loop ---------------------------------------------------------------------------------
    def interval_s(self) -> float:
        box = self.config.mailbox
        interval = box.poll_interval_s if isinstance(box, Pop3Mailbox) else DEFAULT_GMAIL_POLL_S
        return max(self.min_interval_s, float(interval))

    async def _run(self) -> None:
        while not self.stopping.is_set():
            wait_s = await self._once()
            if self.stopping.is_set():
                break
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _once(self) -> float | None:
        """One round; returns how long to wait before the next (None: until woken)."""
        config = self.config
        if not config.enabled:
            await self._release()
            return None
        if config is self._auth_failed_config:
            return None
        if not await self.index.user_active(config.org_id, config.user_id):
            await self._report("paused", "the mailbox owner is a deactivated CRM user: their mail is hidden")
            return self.interval_s()
        if not await self.lock.acquire():
            return min(self.interval_s(), 1.0)  # another worker is on it (a rebalance in progress)
        keep_lock = asyncio.create_task(self._keep_lock())
        try:
            delivered = await self.fetcher.fetch(config, self.stopping)
        except MailboxAuthFailed as exc:
            self._auth_failed_config = config
            await self._report("auth_failed", str(exc))
            return None
        except TransientError as exc:
            self._failures += 1
            await self._report("unreachable", str(exc))
            return self._backoff_s()
        except Exception as exc:
            self._failures += 1
            log.exception("mailbox fetch failed", mailbox=config.key)
            await self._report("error", f"{type(exc).__name__}: {exc}")
            return self._backoff_s()
        finally:
            keep_lock.cancel()
            await self.lock.release()
        self._failures = 0
        await self._report("ok", "")
        if delivered:
            log.info("mail fetched", mailbox=config.key, messages=delivered)
        return self.interval_s()

    async def _keep_lock(self) -> None:
        while True:
            await asyncio.sleep(self.lock.ttl_ms / 3000)
            await self.lock.refresh()

    def _backoff_s(self) -> float:
        ceiling = min(MAX_BACKOFF_S, self.interval_s(), 2.0 ** self._failures)
        return random.uniform(ceiling / 2, ceiling)

    async def _report(self, state: str, reason: str) -> None:
        config = self.config
        INTEGRATION_STATUS.labels(config.org_id, config.user_id, "mail").set(1 if state == "auth_failed" else 0)
        if (state, reason) == self._last_state:
            return
        self._last_state = (state, reason)
        await self.statuses.set(config.org_id, config.user_id, "mail", IntegrationStatus(state, reason, time.time()))
        if state != "ok":
            log.warning("mailbox status", mailbox=config.key, state=state, reason=reason)
