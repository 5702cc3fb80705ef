"""The sandbox as one ASGI app: provider routes, the control API, fault injection and call counters."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from sandbox.dispatch import Calls
from sandbox.errors import ProviderError, google_error, graph_error
from sandbox.faults import FaultBook
from sandbox.quotas import QuotaBook
from sandbox.state import SandboxState


@dataclass
class SandboxConfig:
    """Where the sandbox is reached and the provider figures that have changed over time."""

    http_base_url: str = "http://127.0.0.1:8090"
    identity_base_url: str = "https://127.0.0.1:8443"
    tls_dir: Path = Path(".state/tls")
    # Outlook resources: 4,230 minutes in older Graph pages, 10,080 in newer reports (PROVIDERS.md).
    graph_max_subscription_minutes: int = 10_080
    # Google channels default to a week when no expiration is asked for.
    google_channel_default_ttl_s: int = 7 * 24 * 3600
    # Gmail sends at most one push a second per user.
    gmail_push_min_interval_s: float = 1.0


@dataclass
class Sandbox:
    config: SandboxConfig = field(default_factory=SandboxConfig)
    state: SandboxState = field(default_factory=SandboxState)
    faults: FaultBook = field(default_factory=FaultBook)
    quotas: QuotaBook = field(init=False)

    def __post_init__(self) -> None:
        self.quotas = QuotaBook(self.state)

    def reset(self) -> None:
        self.state.reset()
        self.faults.reset()
        self.quotas.reset()


def create_app(sandbox: Sandbox | None = None) -> FastAPI:
    from sandbox import control, google, microsoft

    sandbox = sandbox or Sandbox()
    app = FastAPI(title="crmsync sandbox", version="1", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json")
    app.state.sandbox = sandbox

    @app.exception_handler(ProviderError)
    async def _provider_error(_: Request, exc: ProviderError):
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"Invalid value at '{where}': {first.get('msg')}"
        if request.url.path.startswith("/v1.0"):
            return graph_error(400, "BadRequest", message).response
        return google_error(400, "invalid", message, location=where).response

    app.include_router(control.router(sandbox))
    for router in google.routers(sandbox) + microsoft.routers(sandbox):
        app.include_router(router)
    app.add_middleware(Calls, book=sandbox.faults, routes_app=app, quotas=sandbox.quotas)
    return app
