"""Ingest: the HTTP front door. It verifies, validates and publishes; it never syncs anything itself."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from services.common.bus import Bus
from services.common.logging import configure_logging, get_logger
from services.common.metrics import REQUEST_LATENCY
from services.common.secrets import SecretBox
from services.common.settings import Settings, get_settings
from services.common.state import connect
from services.common.topics import ensure_topics
from services.ingest import (
    admin,
    calendar_admin,
    crm_changes,
    mail_settings,
    oauth,
    webhooks_google,
    webhooks_graph,
)
from services.ingest.context import IngestContext
from services.ingest.problems import install_problem_handlers

log = get_logger(__name__)


class LatencyMiddleware:
    """Request latency per route template. Plain ASGI: BaseHTTPMiddleware costs a task per request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            REQUEST_LATENCY.labels(getattr(route, "path", "unmatched")).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions, settings.topic_replication)
        bus = Bus(settings, client_id="crmsync-ingest")
        await bus.start()
        redis = connect(settings.redis_url)
        app.state.ingest = IngestContext(settings, bus, redis, SecretBox(settings.fernet_key_list))
        log.info("ingest ready", bootstrap=settings.kafka_bootstrap_servers)
        try:
            yield
        finally:
            await bus.stop()
            await redis.aclose()

    app = FastAPI(
        title="crmsync ingest",
        version="1",
        description="Signed CRM changes, provider webhooks and the admin API, published to the bus.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for module in (crm_changes, admin, calendar_admin, mail_settings, oauth, webhooks_google, webhooks_graph):
        app.include_router(module.router)

    app.add_middleware(LatencyMiddleware)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        ctx: IngestContext = request.app.state.ingest
        broker_ok, redis_ok = await asyncio.gather(ctx.bus.reachable(), _redis_ok(ctx))
        status = 200 if broker_ok and redis_ok else 503
        return JSONResponse({"broker": broker_ok, "redis": redis_ok}, status_code=status)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _redis_ok(ctx: IngestContext) -> bool:
    try:
        return bool(await asyncio.wait_for(ctx.redis.ping(), 2))
    except (RedisError, OSError, TimeoutError):
        return False


def main() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging(settings, "ingest")
    uvicorn.run(create_app(settings), host=settings.ingest_host, port=settings.ingest_port,
                log_level="warning", access_log=False, loop="uvloop", http="httptools")
