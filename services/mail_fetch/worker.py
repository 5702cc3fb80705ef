"""mail_fetch's wiring: crm.changes keep the address index; the mailbox fleet owns mailboxes by
partition and runs a poller per mailbox; every fetched message goes through the MessageSink.
"""
from __future__ import annotations

import mode

from schemas import CrmChange, CrmModule, GmailMailbox, IntegrationConfig
from services.common.bus import Bus
from services.common.handling import InboundRecord
from services.common.secrets import SecretBox
from services.common.settings import Settings
from services.common.state import StatusStore, connect
from services.common.topics import CRM_CHANGES
from services.common.worker import FaustPublisher, handled_agent, new_worker_app, retry_policy
from services.mail_fetch.address_index import AddressIndex
from services.mail_fetch.delivery import MessageSink
from services.mail_fetch.fleet import MailboxFleet
from services.mail_fetch.index_rules import primary_contact
from services.mail_fetch.kept_mail import KeptMail
from services.mail_fetch.mail_state import MailboxLock, ThreadStore
from services.mail_fetch.mailbox_poller import MailboxPoller
from services.mail_fetch.matching import RecordRef
from services.mail_fetch.org_settings import OrgMailSettings
from services.mail_fetch.pop3_fetch import Pop3Fetcher
from services.mail_fetch.relink import Relinker

WORKER = "mail_fetch"

settings = Settings()
app = new_worker_app(WORKER, settings)
redis = connect(settings.redis_url)
index = AddressIndex(redis)
org_settings = OrgMailSettings(redis)
kept = KeptMail(redis)
relinker = Relinker(index, kept, org_settings, FaustPublisher(app))


async def keep_address_index(change: CrmChange, record: InboundRecord) -> None:
    """Move the address index; what a change links anew (an address a lead or contact gains, a deal's new
    primary contact) is re-linked first, where the org wants it: a change redelivered after a crash then
    re-links again, under the same idempotency keys, instead of being lost."""
    if change.module in (CrmModule.LEADS, CrmModule.CONTACTS):
        diff = await index.address_diff(change)
        await relinker.relink(change.org_id, RecordRef(change.module, change.record_id), diff.added)
        await index.write_addresses(change, diff)
        return
    if change.module == CrmModule.DEALS:
        contact = primary_contact(change)
        if contact and contact != await index.primary_contact_of(change.org_id, change.record_id):
            await relinker.relink_deal(change.org_id, change.record_id, contact)
    await index.apply(change)


handled_agent(app, CRM_CHANGES, CrmChange, keep_address_index, worker=WORKER, settings=settings)


class MailFetch:
    """What the fleet needs, built on the running event loop (the Kafka producer insists on one)."""

    def __init__(self):
        self.bus = Bus(settings, client_id=f"crmsync-{WORKER}")
        self.sink = MessageSink(index, ThreadStore(redis), self.bus, org_settings, kept, WORKER)
        self.pop3 = Pop3Fetcher(self.sink, redis, SecretBox(settings.fernet_key_list))
        self.fleet = MailboxFleet(settings, self.make_poller, self.bus, retry_policy(settings), WORKER)

    def fetcher_for(self, config: IntegrationConfig):
        if isinstance(config.mailbox, GmailMailbox):
            from services.mail_fetch.gmail_fetch import gmail_fetcher

            return gmail_fetcher(settings, self.sink, redis)
        return self.pop3

    def make_poller(self, config: IntegrationConfig) -> MailboxPoller:
        return MailboxPoller(config, self.fetcher_for(config), StatusStore(redis), index,
                             MailboxLock(redis, config.key))


@app.service
class MailboxFleetService(mode.Service):
    """Starts the bus and the fleet with the app; on shutdown ends every mailbox between two messages."""

    mail: MailFetch | None = None

    async def on_start(self) -> None:
        self.mail = MailFetch()
        await self.mail.bus.start()
        await self.mail.fleet.start()

    async def on_stop(self) -> None:
        if self.mail is not None:
            await self.mail.fleet.stop()
            await self.mail.bus.stop()
