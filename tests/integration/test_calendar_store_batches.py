"""The mapping store's batch methods against the real Redis: what a whole-calendar pass (a first sync)
reads and writes a page at a time must mean exactly what the one-by-one methods mean."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.store import EventMapping, MappingStore, VersionConflict
from services.common.state import connect

pytestmark = pytest.mark.integration


def event(title: str) -> CanonicalEvent:
    start = dt.datetime(2031, 3, 4, 10, tzinfo=dt.UTC)
    return CanonicalEvent(title=title, start=EventTime(date_time=start, time_zone="UTC"), end=EventTime(date_time=start + dt.timedelta(hours=1), time_zone="UTC"))


def mapping(crm_id: str, provider_id: str, title: str = "Review") -> EventMapping:
    snapshot = event(title)
    return EventMapping(crm_id, provider_id, snapshot, snapshot.fingerprint(), snapshot.fingerprint(), "etag-1",
                        provider_snapshot=snapshot)


@pytest.fixture
async def maps(redis_url):
    client = connect(redis_url)
    store = MappingStore(client, f"org{uuid.uuid4().hex[:8]}:ann:google_calendar")
    yield store
    await store.clear()
    await client.aclose()


async def test_saved_many_read_back_one_by_one_and_in_batches(maps):
    saved = await maps.save_many([(mapping(f"r{n}", f"p:{n}"), None) for n in range(5)])

    assert [m.version for m in saved] == [1] * 5
    for n in range(5):
        assert await maps.by_crm_id(f"r{n}") == saved[n]
        assert await maps.by_provider_id(f"p:{n}") == saved[n]
    assert await maps.by_crm_ids(["r1", "missing", "r3"]) == {"r1": saved[1], "r3": saved[3]}
    assert await maps.by_provider_ids(["p:4", "p:missing", "p:0"]) == {"p:4": saved[4], "p:0": saved[0]}
    assert await maps.by_crm_ids([]) == {} and await maps.by_provider_ids([]) == {}


async def test_a_stale_previous_fails_its_own_save_only_and_is_raised(maps):
    first = await maps.save(mapping("r1", "p:1"), None)
    await maps.save(mapping("r1", "p:1", "Renamed elsewhere"), first)  # another writer, after we read `first`

    with pytest.raises(VersionConflict, match="r1"):
        await maps.save_many([(mapping("r0", "p:0"), None), (mapping("r1", "p:1", "Ours"), first),
                              (mapping("r2", "p:2"), None)])

    assert (await maps.by_crm_id("r1")).snapshot.title == "Renamed elsewhere"
    assert set(await maps.by_crm_ids(["r0", "r2"])) == {"r0", "r2"}


async def test_a_new_provider_id_drops_the_stale_reverse_entry(maps):
    first = await maps.save(mapping("r1", "p:old"), None)

    (moved,) = await maps.save_many([(mapping("r1", "p:new"), first)])

    assert moved.version == 2
    assert await maps.by_provider_ids(["p:old", "p:new"]) == {"p:new": moved}
