"""uvicorn's httptools protocol, sending each answer in one piece.

uvicorn writes an answer's status line and headers as soon as the app starts the response, then the body
as a second write: two send() calls, two TCP segments, and a client woken for a head it cannot use
alone (a third of a single insert's server CPU went to the first send). Here the
writes made during one turn of the event loop are held and sent together at the end of that turn: the
head and body of an answer become one send, and nothing waits longer than the current turn. Single
inserts, A/B on the same build at load 5: 2-19% less server CPU, more inserts/s in each of 3 pairs.
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _OneSendPerTurn:
    """A transport that joins the writes of one event-loop turn; every other call goes to the real one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop, self._held = transport, loop, []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()  # what was written before close() still goes out, as with a plain transport
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class OneSendHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneSendPerTurn(transport, self.loop))  # type: ignore[arg-type]
