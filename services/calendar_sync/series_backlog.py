"""A series' occurrences that arrive while the series' own CRM record is still being created.

A first sync (or a series created and changed in quick succession) brings the series and, right after,
its cancelled and edited occurrences; the series' CRM id is known only when the CRM's echo of its
creation comes back. Applied at once, a cancellation would find no series to add its EXDATE to and an
exception would be created with no Series_Id. So they wait here, by the series' provider id, and are
applied when observe_crm_change links the series: the EXDATEs in one update of the series' record, the
exceptions created with the series' CRM id.

    calseriesbacklog:<digest of scope and series provider id>   hash: occurrence provider id -> JSON

Keyed by the occurrence's provider id, a redelivered (or later) change of the same occurrence replaces
the kept one; the commands of a replay carry keys built from what they write, so a replay done twice
writes once.
"""
from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from schemas import Direction, IntegrationConfig
from services.calendar_sync import rules_series
from services.calendar_sync.model import CanonicalEvent, EventTime
from services.calendar_sync.ports import ProviderEvent
from services.calendar_sync.store import (
    EventMapping,
    MappingStore,
    PendingCreation,
    PendingCreations,
    _digest,
)
from services.common.logging import get_logger
from services.common.state import key

if TYPE_CHECKING:
    from services.calendar_sync.engine import CalendarEngine

log = get_logger(__name__)

# Kept only while the series' creation is on its way (its PendingCreations marker exists), atomically:
# once the echo took the marker, the series is being linked and the occurrence is applied as usual.
_KEEP_IF_PENDING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


def _to_json(config: IntegrationConfig, remote: ProviderEvent) -> str:
    data = dataclasses.asdict(remote) | {
        "event": remote.event.model_dump(mode="json") if remote.event else None,
        "original_start": remote.original_start.model_dump(mode="json") if remote.original_start else None,
        "raw_problems": list(remote.raw_problems),
    }
    return json.dumps({"config": config.model_dump(mode="json"), "remote": data})


def _from_json(raw: str) -> tuple[IntegrationConfig, ProviderEvent]:
    data = json.loads(raw)
    remote = data["remote"]
    remote |= {"event": CanonicalEvent.model_validate(remote["event"]) if remote["event"] else None,
               "original_start": EventTime.model_validate(remote["original_start"]) if remote["original_start"]
               else None, "raw_problems": tuple(remote["raw_problems"])}
    return IntegrationConfig.model_validate(data["config"]), ProviderEvent(**remote)


class SeriesBacklog:
    def __init__(self, engine: CalendarEngine, ttl_s: int = 7 * 86400):
        self.engine = engine
        self.redis: aioredis.Redis = engine.redis
        self.ttl_s = ttl_s
        self._keep = self.redis.register_script(_KEEP_IF_PENDING)

    @staticmethod
    def _backlog(scope: str, series_provider_id: str) -> str:
        return key("calseriesbacklog", _digest(f"{scope}\x1f{series_provider_id}"))

    async def keep(self, config: IntegrationConfig, remote: ProviderEvent) -> bool:
        """Keep an occurrence of a series whose CRM creation is on its way; False: not so, apply it now."""
        if not remote.series_id:
            return False
        kept = await self._keep(keys=[PendingCreations.marker(config.key, remote.series_id),
                                      self._backlog(config.key, remote.series_id)],
                                args=[remote.provider_id, _to_json(config, remote), self.ttl_s])
        if kept:
            log.info("occurrence kept until its series is in the crm", scope=config.key,
                     series_id=remote.series_id, provider_id=remote.provider_id)
        return bool(kept)

    async def drop(self, pending: PendingCreation) -> None:
        """The series was deleted at the provider before its CRM record was linked: nothing to replay."""
        await self.redis.delete(self._backlog(pending.scope, pending.provider_id))

    async def replay(self, pending: PendingCreation, series: EventMapping) -> None:
        """The series' CRM record is linked: apply what was kept for it. Read, applied, then dropped: a crash
        in between replays it again, and the keyed commands write once.

        Only a series' occurrences are kept (`keep`: by their series' provider id): the echo of any other
        creation (a first sync's thousands) has nothing to look up."""
        if not pending.snapshot.recurrence:
            return
        name = self._backlog(pending.scope, pending.provider_id)
        kept = [_from_json(raw) for raw in (await self.redis.hgetall(name)).values()]
        if not kept:
            return
        config = kept[-1][0]
        starts, exceptions = rules_series.replay_plan(remote for _, remote in kept)
        maps = MappingStore(self.redis, pending.scope)
        if starts and series.snapshot is not None and config.direction != Direction.CRM_TO_PROVIDER:
            target = rules_series.excluding(series.snapshot, starts)
            await self.engine.crm.update_event(config, series.crm_id, target, f"exclude:{target.fingerprint()}",
                                               before=series.snapshot)
            # The provider holds these cancellations already: only the CRM's side of the mapping moves on.
            await maps.save(dataclasses.replace(series, snapshot=target, crm_fingerprint=target.fingerprint()),
                            series)
        for remote in exceptions:
            await self.engine.create_exception(config, remote, maps)
        await self.redis.delete(name)
        log.info("kept occurrences applied", scope=pending.scope, series_id=pending.provider_id,
                 excluded=len(starts), exceptions=len(exceptions))
