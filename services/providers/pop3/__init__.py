"""POP3 mailboxes (RFC 1939, RFC 2449) through the standard library's poplib."""
from services.providers.pop3.client import (
    PIPELINE_WINDOW,
    Pop3Account,
    Pop3AuthError,
    Pop3Session,
    Pop3Unavailable,
)

__all__ = ["PIPELINE_WINDOW", "Pop3Account", "Pop3AuthError", "Pop3Session", "Pop3Unavailable"]
