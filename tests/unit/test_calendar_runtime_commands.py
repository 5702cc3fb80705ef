"""CRM commands of one unit of work leave without a broker round trip each, and the unit ends only once
the broker has them all (the message is acknowledged after its side effects). Nothing connects here."""
import asyncio
import datetime as dt

import pytest

from schemas import CrmCommand, CrmModule, DeleteRecord
from services.calendar_sync.runtime import CalendarRuntime
from services.common.settings import Settings


def command(n: int) -> CrmCommand:
    return CrmCommand(org_id="org", idempotency_key=f"k{n}", correlation_id=f"c{n}", issued_by="google_calendar",
                      issued_at=dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc),
                      action=DeleteRecord(module=CrmModule.EVENTS, record_id=f"r{n}"))


class Bus:
    def __init__(self):
        self.published, self.sent, self.deliveries = [], [], []

    async def publish(self, topic, key, message):
        self.published.append(message.idempotency_key)

    async def send(self, topic, key, message):
        self.sent.append(message.idempotency_key)
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


async def test_commands_in_a_unit_of_work_are_sent_and_awaited_together():
    bus = Bus()
    runtime = CalendarRuntime(Settings(), bus.publish, bus.send)

    async def unit():
        async with runtime.unit_of_work():
            for n in range(3):
                await runtime.publish_command(command(n))

    done = asyncio.create_task(unit())
    await asyncio.sleep(0.01)
    assert bus.sent == ["k0", "k1", "k2"] and bus.published == []
    assert not done.done(), "the unit waits for the broker to have its commands"
    for delivery in bus.deliveries:
        delivery.set_result(None)
    await asyncio.wait_for(done, 1)


async def test_a_failed_delivery_fails_the_unit_of_work():
    bus = Bus()
    runtime = CalendarRuntime(Settings(), bus.publish, bus.send)

    async def unit():
        async with runtime.unit_of_work():
            await runtime.publish_command(command(0))

    done = asyncio.create_task(unit())
    await asyncio.sleep(0.01)
    bus.deliveries[0].set_exception(ConnectionError("broker gone"))
    with pytest.raises(ConnectionError, match="broker gone"):
        await asyncio.wait_for(done, 1)


async def test_outside_a_unit_of_work_each_command_is_published_and_awaited():
    bus = Bus()
    runtime = CalendarRuntime(Settings(), bus.publish, bus.send)
    await runtime.publish_command(command(0))
    assert bus.published == ["k0"] and bus.sent == []
