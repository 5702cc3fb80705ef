"""structlog set-up: JSON lines in production, a readable console locally; context bound per message."""
from __future__ import annotations

import logging
import sys

import structlog

from services.common.settings import Settings


def configure_logging(settings: Settings, service: str, stream=None) -> None:
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and settings.env == "production")
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")


def bind_integration(org_id: str | None, user_id: str | None, integration: str | None) -> None:
    """Every log line of the current task names the org, user and integration it is about."""
    structlog.contextvars.bind_contextvars(org_id=org_id, user_id=user_id, integration=integration)


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
