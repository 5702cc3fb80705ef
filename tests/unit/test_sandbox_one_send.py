"""The sandbox's transport wrapper: the writes of one event-loop turn leave as one send, none is lost."""
from __future__ import annotations

import asyncio

from sandbox.http_protocol import _OneSendPerTurn


class RecordingTransport:
    """Stands for the socket transport: what reached it, in order, and whether it is closed."""

    def __init__(self):
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 8090) if name == "sockname" else default


async def test_head_and_body_of_one_turn_leave_as_one_send():
    transport = RecordingTransport()
    wrapper = _OneSendPerTurn(transport, asyncio.get_running_loop())
    wrapper.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    wrapper.write(b"{}")
    assert transport.sent == []  # held until the end of the turn
    await asyncio.sleep(0)
    assert transport.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_writes_of_later_turns_are_sent_in_order():
    transport = RecordingTransport()
    wrapper = _OneSendPerTurn(transport, asyncio.get_running_loop())
    wrapper.write(b"first")
    await asyncio.sleep(0)
    wrapper.write(b"second")
    await asyncio.sleep(0)
    assert transport.sent == [b"first", b"second"]


async def test_close_sends_what_was_held_first():
    transport = RecordingTransport()
    wrapper = _OneSendPerTurn(transport, asyncio.get_running_loop())
    wrapper.write(b"last answer")
    wrapper.close()
    assert transport.sent == [b"last answer"] and transport.closed
    await asyncio.sleep(0)  # the flush scheduled for the turn finds nothing left to send
    assert transport.sent == [b"last answer"]


async def test_nothing_is_written_to_a_transport_already_closing():
    transport = RecordingTransport()
    wrapper = _OneSendPerTurn(transport, asyncio.get_running_loop())
    wrapper.write(b"too late")
    transport.closed = True  # the peer went away during the turn
    await asyncio.sleep(0)
    assert transport.sent == []


async def test_other_calls_reach_the_real_transport():
    transport = RecordingTransport()
    wrapper = _OneSendPerTurn(transport, asyncio.get_running_loop())
    assert wrapper.get_extra_info("sockname") == ("127.0.0.1", 8090)
    assert wrapper.is_closing() is False
