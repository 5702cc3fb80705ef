"""Graph change-notification subscriptions: create, renew in place, delete.

https://learn.microsoft.com/graph/api/resources/subscription: Graph validates the notification URL
(and the lifecycle URL) by a handshake before it answers the create; `clientState` comes back on
every notification and is how ingest tells Graph's posts from forgeries; an Outlook subscription
lives at most a few days (4,230 minutes documented, more seen: a setting) and is renewed by PATCHing
its expirationDateTime. Lifecycle notifications (reauthorizationRequired, missed, subscriptionRemoved)
go to `{notification URL}/lifecycle`, where ingest serves them.
"""
from __future__ import annotations

import datetime as dt

from services.calendar_sync.ports import Channel
from services.common.retry import TransientError, retry_async
from services.providers.microsoft.graph import GraphClient, GraphError

CHANGE_TYPES = "created,updated,deleted"
# Graph's answer when the notification URL did not answer its validation request within 10 seconds
# (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation).
VALIDATION_TIMED_OUT = "Subscription validation request timed out"
# Asked a little short of the maximum, so that a clock a bit behind Graph's is not refused.
_CLOCK_MARGIN = dt.timedelta(minutes=5)


class SubscriptionGone(LookupError):
    """The subscription no longer exists at Graph (expired, removed): open a new one."""


def lifecycle_address(address: str) -> str:
    return address.rstrip("/") + "/lifecycle"


def _graph_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(graph_time: str) -> float:
    """Graph's UTC times carry seven fractional digits; Python reads them (to the microsecond)."""
    moment = dt.datetime.fromisoformat(graph_time)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


class Subscriptions:
    def __init__(self, client: GraphClient, max_minutes: int):
        self.client = client
        self.lifetime = dt.timedelta(minutes=max_minutes) - _CLOCK_MARGIN

    def _expiration(self) -> str:
        return _graph_time(dt.datetime.now(dt.UTC) + self.lifetime)

    async def create(self, resource: str, address: str, secret: str) -> Channel:
        body = {
            "changeType": CHANGE_TYPES,
            "notificationUrl": address,
            "lifecycleNotificationUrl": lifecycle_address(address),
            "resource": resource,
            "expirationDateTime": self._expiration(),
            "clientState": secret,
        }

        async def attempt():
            try:
                return await self.client.request("POST", "/subscriptions", json=body)
            except GraphError as exc:
                # Graph's handshake with our notification URL waits 10 s; a busy ingest (many first syncs
                # opening subscriptions at once) can miss it, and a later try finds it answering.
                if exc.status == 400 and VALIDATION_TIMED_OUT in str(exc):
                    raise TransientError(f"Graph could not validate the notification URL in time: {exc}") from exc
                raise

        created = (await retry_async(attempt, self.client.policy)).body
        return Channel(created["id"], created["resource"], _epoch(created["expirationDateTime"]), secret)

    async def renew(self, channel: Channel) -> Channel:
        try:
            renewed = (await self.client.request("PATCH", f"/subscriptions/{channel.channel_id}",
                                                 json={"expirationDateTime": self._expiration()})).body
        except GraphError as exc:
            if exc.status == 404:
                raise SubscriptionGone(f"subscription {channel.channel_id} is gone") from exc
            raise
        expires_at = _epoch(renewed["expirationDateTime"])
        return Channel(channel.channel_id, channel.resource_id, expires_at, channel.secret)

    async def delete(self, channel: Channel) -> None:
        try:
            await self.client.request("DELETE", f"/subscriptions/{channel.channel_id}")
        except GraphError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise
