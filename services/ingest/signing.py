"""Request signing between the CRM backend and ingest: HMAC-SHA256 over "{timestamp}.{raw body}".

The timestamp is inside the signed text so a captured request cannot be replayed later than the
tolerance; the raw body (not re-serialised JSON) is what is signed, so both sides agree byte for byte.
"""
from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Crmsync-Signature"
TIMESTAMP_HEADER = "X-Crmsync-Timestamp"


class SignatureError(ValueError):
    """Why a request's signature is refused, in words for the caller."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float, tolerance_s: int) -> None:
    """Raise SignatureError unless the signature is the body's and the timestamp is fresh."""
    if not timestamp:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not timestamp.isdigit():
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds")
    skew = abs(now - int(timestamp))
    if skew > tolerance_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is {int(skew)} s off, more than the {tolerance_s} s allowed")
    if not signature.startswith("sha256="):
        raise SignatureError(f"{SIGNATURE_HEADER} must be 'sha256=<hex>'")
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        raise SignatureError("signature does not match the body")
