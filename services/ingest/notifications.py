"""Publishing verified provider notifications once per delivery, whatever the provider retries."""
from __future__ import annotations

from schemas import ProviderNotification
from services.common.metrics import NOTIFICATIONS_PUBLISHED, WEBHOOK_DUPLICATES, WEBHOOKS_REFUSED
from services.common.state import first_delivery, forget_delivery
from services.common.topics import PROVIDER_NOTIFICATIONS
from services.ingest.context import IngestContext
from services.ingest.problems import Problem


async def publish_once(ctx: IngestContext, notification: ProviderNotification) -> bool:
    """True when published; False for a delivery already published. Broker trouble answers 503."""
    provider = notification.provider
    if not await first_delivery(ctx.redis, provider, notification.delivery_id, ctx.settings.webhook_dedupe_ttl_s):
        WEBHOOK_DUPLICATES.labels(provider).inc()
        return False
    try:
        await ctx.bus.publish(PROVIDER_NOTIFICATIONS.name, notification.key, notification)
    except Exception as exc:  # noqa: BLE001 - any publish failure is the broker's: the provider retries
        # Let the provider's retry through: it is not a repeat of something we published.
        await forget_delivery(ctx.redis, provider, notification.delivery_id)
        raise Problem(503, "broker-unavailable", "Broker unavailable", f"could not publish: {exc}",
                      headers={"Retry-After": "1"}) from None
    NOTIFICATIONS_PUBLISHED.labels(provider, notification.kind.value).inc()
    return True


def refuse(provider: str, reason: str, status: int, detail: str) -> Problem:
    """A notification that is forged, replayed from elsewhere or for a channel we do not know."""
    WEBHOOKS_REFUSED.labels(provider, reason).inc()
    return Problem(status, f"webhook-{reason.replace('_', '-')}", "Notification refused", detail)
