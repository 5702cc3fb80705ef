"""The reference CRM's wiring: the crm.commands consumer, and the HTTP API and publisher beside it."""
from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sandbox.crm.api import create_api
from sandbox.crm.command_batches import CommandBatches
from sandbox.crm.commands import apply_command
from sandbox.crm.outbox import ChangePublisher
from sandbox.crm.records import RecordNotFound
from sandbox.crm.service import CrmFrontDoor
from sandbox.crm.settings import CrmSettings
from sandbox.crm.store import CrmStore
from schemas import CrmCommand
from services.common.bus import faust_topic
from services.common.handling import InboundRecord, MessageHandler
from services.common.logging import get_logger
from services.common.retry import PermanentError, TransientError
from services.common.settings import Settings
from services.common.state import connect
from services.common.topics import CRM_COMMANDS
from services.common.worker import FaustPublisher, new_worker_app, retry_policy
from services.ingest.client import AsyncIngestClient

log = get_logger(__name__)

NAME = "crm"

settings = Settings()
crm_settings = CrmSettings()
redis = connect(settings.redis_url)
store = CrmStore(redis, crm_settings.applied_ttl_s)
app = new_worker_app(NAME, settings)


async def handle_command(command: CrmCommand | None, record: InboundRecord) -> None:
    if command is None:  # a tombstone: nothing to apply
        return
    try:
        applied = await apply_command(store, command)
    except RecordNotFound as exc:
        raise PermanentError(f"{command.action.kind}: {exc}") from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise TransientError(f"Redis unavailable: {exc}") from exc
    if not applied:
        log.info("command applied before, skipped", org_id=command.org_id, idempotency_key=command.idempotency_key)


@app.agent(faust_topic(app, CRM_COMMANDS), name=f"{NAME}.{CRM_COMMANDS.name}")
async def apply_commands_agent(stream):
    """Each command ends as `handle_command` ends it, applied in batches of what arrived meanwhile."""
    manual = stream.noack()
    handler = MessageHandler(NAME, CrmCommand, handle_command, FaustPublisher(app), retry_policy(settings))
    batches = CommandBatches(store, handler, manual.ack, linger_s=crm_settings.command_linger_ms / 1000)
    try:
        async for event in manual.events():
            await batches.submit(InboundRecord.from_faust_event(event), event)
    finally:
        batches.cancel()

ingest = AsyncIngestClient(crm_settings.ingest_url, settings.hmac_secret)
publisher = ChangePublisher(redis, ingest, crm_settings, retry_policy(settings))
app.service(CrmFrontDoor(create_api(store), publisher, ingest, crm_settings))
