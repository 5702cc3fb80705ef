"""calendar_sync's Redis state against the real Redis: the one-round-trip reads find what the writes left."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from schemas import ChangeSource, CrmChange, CrmModule, CrmOp, Integration, IntegrationConfig
from services.calendar_sync.runtime import CalendarRuntime, ConfigView
from services.calendar_sync.store import CrmIndex, EventMapping, MappingStore
from services.common.settings import DEV_FERNET_KEY, Settings
from services.common.state import connect
from services.common.tokens import Grant
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


def scope() -> str:
    return f"{unique_org()}:u1:google_calendar"


def change(org: str, owner: str, record: str, title: str, op: CrmOp = CrmOp.UPDATED) -> CrmChange:
    return CrmChange(org_id=org, module=CrmModule.EVENTS, record_id=record, op=op, owner_id=owner,
                     source=ChangeSource.UI, modified_at=dt.datetime.now(dt.UTC), fields={"Event_Title": title})


def test_a_mapping_is_found_by_its_provider_id_and_not_by_one_it_had_before(redis_url):
    async def scenario():
        redis = connect(redis_url)
        maps = MappingStore(redis, scope())
        first = await maps.save(EventMapping("rec-1", "google:a/b c", None), None)
        assert (await maps.by_provider_id("google:a/b c")).crm_id == "rec-1", "any character in a provider id"
        await maps.save(EventMapping("rec-1", "other", None), first)
        assert await maps.by_provider_id("google:a/b c") is None
        assert (await maps.by_provider_id("other")).version == 2
        assert await maps.by_provider_id("never written") is None
        await redis.aclose()

    asyncio.run(scenario())


def test_the_index_keeps_the_first_source_and_sees_an_event_move_to_another_owner(redis_url):
    async def scenario():
        redis, org, record = connect(redis_url), unique_org(), uuid.uuid4().hex
        index = CrmIndex(redis)
        first = change(org, "ann", record, "one")
        assert await index.record_event(first.model_copy(update={"source": ChangeSource.IMPORT})) is None
        assert await index.record_event(first) is None
        assert (await index.event(org, "ann", record)).created_source == "import"
        assert await index.record_event(change(org, "bob", record, "moved")) == "ann"
        assert await index.event(org, "ann", record) is None
        moved = await index.event(org, "bob", record)
        assert moved.change.fields["Event_Title"] == "moved" and moved.created_source == "import"
        assert await index.record_event(change(org, "bob", record, "gone", CrmOp.DELETED)) is None
        assert await index.event(org, "bob", record) is None
        await redis.aclose()

    asyncio.run(scenario())


def test_configurations_of_several_scopes_in_one_read(redis_url):
    async def scenario():
        redis, org = connect(redis_url), unique_org()
        configs = ConfigView(redis)
        config = IntegrationConfig(org_id=org, user_id="ann", integration=Integration.GOOGLE_CALENDAR,
                                   enabled=True, updated_at=dt.datetime.now(dt.UTC))
        await configs.put(config.key, config)
        missing = f"{org}:ann:microsoft_calendar"
        assert await configs.get_many([config.key, missing]) == [config, None]
        assert await configs.get_many([]) == []
        await redis.aclose()

    asyncio.run(scenario())


def test_a_records_mapping_and_its_index_entry_in_one_read(redis_url):
    async def scenario():
        redis, org, record = connect(redis_url), unique_org(), uuid.uuid4().hex
        index, maps = CrmIndex(redis), MappingStore(redis, f"{org}:ann:google_calendar")
        assert await maps.by_crm_id_with_indexed(index, org, "ann", record) == (None, None)
        await index.record_event(change(org, "ann", record, "one"))
        saved = await maps.save(EventMapping(record, "g1", None), None)
        mapping, indexed = await maps.by_crm_id_with_indexed(index, org, "ann", record)
        assert mapping == saved and indexed == await index.event(org, "ann", record)
        assert indexed.change.fields["Event_Title"] == "one"
        await redis.aclose()

    asyncio.run(scenario())


def test_a_scopes_configuration_and_grant_in_one_read(redis_url):
    async def scenario():
        runtime = CalendarRuntime(Settings(redis_url=redis_url, fernet_keys=DEV_FERNET_KEY), publish=None)
        org = unique_org()
        config = IntegrationConfig(org_id=org, user_id="ann", integration=Integration.GOOGLE_CALENDAR,
                                   enabled=True, updated_at=dt.datetime.now(dt.UTC))
        assert await runtime.config_and_grant(config.key) == (None, None)
        await runtime.configs.put(config.key, config)
        assert await runtime.config_and_grant(config.key) == (config, None), "configured, not connected yet"
        grant = Grant(provider="google", account_email="ann@example.com", refresh_token="r1", scopes=("a",))
        await runtime.tokens.put(org, "ann", "google_calendar", grant)
        assert await runtime.config_and_grant(config.key) == (config, grant)
        assert await runtime.config_and_grant("not:a:scope:key") == (None, None)
        await runtime.redis.aclose()

    asyncio.run(scenario())
