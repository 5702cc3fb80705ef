"""calendar_sync's Redis state against the real Redis: the one-round-trip reads find what the writes left."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest

from schemas import ChangeSource, CrmChange, CrmModule, CrmOp, Integration, IntegrationConfig
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.runtime import CalendarRuntime, ConfigView
from services.calendar_sync.store import (
    CrmIndex,
    EventMapping,
    MappingStore,
    PendingCreation,
    PendingCreations,
    _digest,
)
from services.common.settings import DEV_FERNET_KEY, Settings
from services.common.state import connect, key
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


def test_a_creation_is_indexed_at_once_and_a_repeated_one_as_any_later_change(redis_url):
    """A record's `created` change is indexed in one script call; redelivered (or after a move) it is read
    and decided as any change: the first source is kept, and an owner change is seen."""
    async def scenario():
        redis, org, record = connect(redis_url), unique_org(), uuid.uuid4().hex
        index = CrmIndex(redis)
        created = change(org, "ann", record, "one", CrmOp.CREATED).model_copy(update={"source": ChangeSource.IMPORT})
        assert await index.record_event(created) is None
        first = await index.event(org, "ann", record)
        assert (first.created_source, first.in_sync, first.change.fields["Event_Title"]) == ("import", False, "one")
        again = created.model_copy(update={"source": ChangeSource.UI, "fields": {"Event_Title": "two"}})
        assert await index.record_event(again) is None
        second = await index.event(org, "ann", record)
        assert (second.created_source, second.in_sync, second.change.fields["Event_Title"]) == ("import", True, "two")
        assert await index.record_event(created.model_copy(update={"owner_id": "bob"})) == "ann"
        assert await index.event(org, "ann", record) is None and await index.event(org, "bob", record) is not None
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


def test_a_pending_creation_is_taken_once_with_whether_its_event_went_meanwhile(redis_url):
    """Taken in one round trip with its marker; one put before creations named their marker still is."""
    async def scenario():
        redis, where = connect(redis_url), scope()
        pending = PendingCreations(redis)
        event = CanonicalEvent(title="Demo", start=EventTime(date_time=dt.datetime(2030, 6, 1, 9, tzinfo=dt.UTC)),
                               end=EventTime(date_time=dt.datetime(2030, 6, 1, 10, tzinfo=dt.UTC)))
        await pending.put_many([("c-kept", PendingCreation(where, "p-kept", event, "f1")),
                                ("c-gone", PendingCreation(where, "p-gone", event, "f2"))])
        assert await pending.mark_gone(where, "p-gone")
        kept, gone = await pending.take("c-kept"), await pending.take("c-gone")
        assert (kept[0].provider_id, kept[0].snapshot, kept[1]) == ("p-kept", event, False)
        assert (gone[0].provider_id, gone[1]) == ("p-gone", True)
        assert await pending.take("c-kept") is None and await pending.take("never put") is None
        assert not await pending.mark_gone(where, "p-kept"), "the marker went with the creation"
        # as an older version put it: no marker named
        await pending.put("c-old", PendingCreation(where, "p-old", event, "f3"))
        name = key("calpending", _digest("c-old"))
        await redis.set(name, json.dumps({k: v for k, v in json.loads(await redis.get(name)).items() if k != "marker"}))
        assert await pending.mark_gone(where, "p-old")
        old = await pending.take("c-old")
        assert (old[0].provider_id, old[1]) == ("p-old", True)
        await redis.aclose()

    asyncio.run(scenario())


def test_a_meeting_is_owned_by_the_first_user_to_claim_it_whether_claimed_alone_or_with_others(redis_url):
    """One script call claims a page's meetings: each goes to the first claimant, whatever its case or
    repetition, and a single claim agrees with a claim in bulk."""
    async def scenario():
        redis, org = connect(redis_url), unique_org()
        index = CrmIndex(redis)
        assert await index.claim_meetings(org, [], "ann") == {}
        assert await index.claim_meetings(org, ["m1", "m2", "m1"], "ann") == {"m1": "ann", "m2": "ann"}
        assert await index.claim_meetings(org, ["M2", "m3"], "bob") == {"M2": "ann", "m3": "bob"}
        assert await index.claim_meeting(org, "m3", "ann") == "bob"
        assert await index.claim_meeting(org, "m4", "ann") == "ann"
        assert await index.claim_meetings(unique_org(), ["m1"], "bob") == {"m1": "bob"}, "per org"
        await redis.aclose()

    asyncio.run(scenario())


def test_pending_creations_put_together_each_with_its_marker_and_time_to_live(redis_url):
    async def scenario():
        redis, where = connect(redis_url), scope()
        pending = PendingCreations(redis, ttl_s=600)
        event = CanonicalEvent(title="Démo ☕ \"quoted\"", start=EventTime(date_time=dt.datetime(2030, 6, 1, 9, tzinfo=dt.UTC)),
                               end=EventTime(date_time=dt.datetime(2030, 6, 1, 10, tzinfo=dt.UTC)))
        await pending.put_many([])
        await pending.put_many([(f"c{n}", PendingCreation(where, f"p{n}", event, f"f{n}", f"e{n}")) for n in range(3)])
        for n in range(3):
            name = key("calpending", _digest(f"c{n}"))
            assert 0 < await redis.ttl(name) <= 600 and 0 < await redis.ttl(PendingCreations.marker(where, f"p{n}")) <= 600
            assert await redis.get(PendingCreations.marker(where, f"p{n}")) == "pending"
            taken, gone = await pending.take(f"c{n}")
            assert (taken.provider_id, taken.provider_fingerprint, taken.etag, taken.snapshot, gone) == \
                (f"p{n}", f"f{n}", f"e{n}", event, False)
        await redis.aclose()

    asyncio.run(scenario())


def test_the_echo_of_our_creation_is_indexed_and_its_pending_creation_taken_in_one_call(redis_url):
    """What record_event then take would do, in every case: a new record, one indexed already (a
    redelivery: decided as any change, the creation still taken), no creation, one whose event went."""
    async def scenario():
        redis, org, where = connect(redis_url), unique_org(), scope()
        index, pending = CrmIndex(redis), PendingCreations(redis)
        event = CanonicalEvent(title="Demo", start=EventTime(date_time=dt.datetime(2030, 6, 1, 9, tzinfo=dt.UTC)),
                               end=EventTime(date_time=dt.datetime(2030, 6, 1, 10, tzinfo=dt.UTC)))
        await pending.put_many([("c-new", PendingCreation(where, "p-new", event, "f1")),
                                ("c-again", PendingCreation(where, "p-again", event, "f2")),
                                ("c-gone", PendingCreation(where, "p-gone", event, "f3"))])

        def echo(record: str, correlation: str, owner: str = "ann") -> CrmChange:
            return change(org, owner, record, "one", CrmOp.CREATED).model_copy(update={"correlation_id": correlation})

        moved_from, (taken, gone) = await index.record_echo(echo("r-new", "c-new"), pending)
        assert (moved_from, taken.provider_id, taken.snapshot, gone) == (None, "p-new", event, False)
        assert (await index.event(org, "ann", "r-new")).change.fields["Event_Title"] == "one"
        assert await index.record_echo(echo("r-new", "c-new"), pending) == (None, None), "taken once"

        await index.record_event(echo("r-again", "c-other"))  # indexed before: a redelivery
        moved_from, (taken, gone) = await index.record_echo(echo("r-again", "c-again", owner="bob"), pending)
        assert (moved_from, taken.provider_id, gone) == ("ann", "p-again", False)
        assert await index.event(org, "bob", "r-again") is not None and await index.event(org, "ann", "r-again") is None

        assert await pending.mark_gone(where, "p-gone")
        moved_from, (taken, gone) = await index.record_echo(echo("r-gone", "c-gone"), pending)
        assert (taken.provider_id, gone) == ("p-gone", True)
        assert await index.record_echo(echo("r-none", "never put"), pending) == (None, None)
        assert await index.event(org, "ann", "r-none") is not None
        updated = change(org, "ann", "r-new", "two").model_copy(update={"correlation_id": "c-upd"})
        assert await index.record_echo(updated, pending) == (None, None)
        assert (await index.event(org, "ann", "r-new")).change.fields["Event_Title"] == "two"
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
