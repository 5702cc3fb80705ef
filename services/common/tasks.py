"""Work started side by side and left unfinished when one part fails or the caller is cancelled."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_unfinished(futures: Iterable[asyncio.Future]) -> None:
    """Cancel those not done yet and wait until they are: none is left running (or its error unread)
    after the caller has moved on."""
    unfinished = [f for f in futures if not f.done()]
    for future in unfinished:
        future.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
