"""The HTTP API and the change publisher, run as a service of the faust worker: the whole reference CRM
is one process, started and stopped (SIGTERM) as every crmsync worker is.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from fastapi import FastAPI
from mode import Service

from sandbox.crm.outbox import ChangePublisher
from sandbox.crm.settings import CrmSettings
from services.common.logging import get_logger
from services.ingest.client import AsyncIngestClient

log = get_logger(__name__)


class _HostedServer(uvicorn.Server):
    """Signals belong to the faust worker hosting this server; the worker's shutdown stops it."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class CrmFrontDoor(Service):
    def __init__(self, api: FastAPI, publisher: ChangePublisher, ingest: AsyncIngestClient,
                 settings: CrmSettings, **kwargs):
        super().__init__(**kwargs)
        self.api, self.publisher, self.ingest, self.settings = api, publisher, ingest, settings
        self.server: _HostedServer | None = None
        self._tasks: list[asyncio.Task] = []

    async def on_start(self) -> None:
        # Bound here, so a port in use fails the start with its reason instead of a silent half-CRM.
        listening = socket.create_server((self.settings.host, self.settings.port))
        # Accepted connections inherit it: without, each response's second write waits on a delayed ACK (40 ms).
        listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server = _HostedServer(uvicorn.Config(self.api, lifespan="off", log_level="warning", access_log=False))
        self._tasks = [asyncio.create_task(self.server.serve(sockets=[listening]), name="crm-http"),
                       asyncio.create_task(self.publisher.run(), name="crm-publisher")]
        host, port = listening.getsockname()[:2]
        log.info("reference CRM serving", url=f"http://{host}:{port}", ingest=self.settings.ingest_url)

    async def on_stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.publisher.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        await self.ingest.aclose()
