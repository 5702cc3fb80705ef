"""What one unit of the engine's work did, for logs, tests and the preview."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncReport:
    pushed: int = 0
    pulled: int = 0
    deleted: int = 0
    skipped: int = 0
    conflicts: int = 0
