"""Microsoft API emulators. `routers(sandbox)` returns the FastAPI routers this package serves."""
from __future__ import annotations


def routers(sandbox) -> list:
    return []
