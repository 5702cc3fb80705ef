"""What a worker process keeps for Graph across messages: one HTTP pool and one token source per grant.

Workers open a provider for each message they handle. Building the MSAL application and redeeming
the refresh token for every message would cost two identity calls each time; keeping the token
source of each grant (its MSAL cache) for the life of the process makes them once per token lifetime.
Quota buckets live in Redis and are shared by every process anyway.
"""
from __future__ import annotations

import collections

import redis.asyncio as aioredis

from services.common.ratelimit import provider_bucket
from services.common.settings import Settings
from services.common.tokens import Grant
from services.providers.microsoft.calendar import GraphCalendarProvider
from services.providers.microsoft.calendar_records import KnownRecords
from services.providers.microsoft.graph import GraphClient
from services.providers.microsoft.graph_http import GraphHttp
from services.providers.microsoft.tokens import MsalTokens

_MAX_GRANTS = 10_000  # token sources kept; the least recently used go first


class GraphConnections:
    def __init__(self, settings: Settings, redis: aioredis.Redis):
        self.settings = settings
        self.redis = redis
        self.http = GraphHttp(settings)
        self._tokens: collections.OrderedDict[tuple, MsalTokens] = collections.OrderedDict()
        self.known_records = KnownRecords()  # which CRM record each event is, learnt across messages

    def tokens(self, grant: Grant) -> MsalTokens:
        """The grant's token source; a grant stored again with a new refresh token gets a new one."""
        identity = (grant.tenant_id, grant.app_only, grant.account_email.lower(), grant.refresh_token)
        source = self._tokens.pop(identity, None) or MsalTokens(self.settings, grant)
        self._tokens[identity] = source
        while len(self._tokens) > _MAX_GRANTS:
            self._tokens.popitem(last=False)[1].close()
        return source

    def client(self, grant: Grant, mailbox: str) -> GraphClient:
        """Graph for one mailbox; its calls draw from that mailbox's bucket (per tenant and mailbox)."""
        tenant = grant.tenant_id or self.settings.microsoft_tenant
        bucket = provider_bucket(self.redis, self.settings, "microsoft_graph", tenant, mailbox.lower())
        return GraphClient(self.settings, self.tokens(grant), bucket, http=self.http)

    def calendar(self, grant: Grant, *, org_id: str, user_id: str, mailbox: str | None = None,
                 calendar_id: str | None = None) -> GraphCalendarProvider:
        """The calendar of `mailbox` (default: the grant's own account; `calendar_id`: its default
        calendar when None) synced for CRM user org_id/user_id. An app-only grant reaches any mailbox
        of its tenant, so it needs `mailbox`."""
        if mailbox is None and grant.app_only:
            raise ValueError("an app-only grant needs the mailbox to act on")
        mailbox = mailbox or grant.account_email
        return GraphCalendarProvider(self.client(grant, mailbox), self.settings, mailbox=mailbox,
                                     org_id=org_id, user_id=user_id, calendar_id=calendar_id,
                                     known=self.known_records)

    async def aclose(self) -> None:
        await self.http.aclose()
        for source in self._tokens.values():
            source.close()
        self._tokens.clear()
