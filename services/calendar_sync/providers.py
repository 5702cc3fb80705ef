"""Which adapter serves a user's calendar: Google Calendar or Microsoft Graph, per the integration."""
from __future__ import annotations

from schemas import Integration, IntegrationConfig
from services.calendar_sync.ports import CalendarProvider
from services.common.settings import Settings
from services.common.tokens import Grant
from services.providers.google.calendar import GoogleCalendarProvider
from services.providers.microsoft.connections import GraphConnections


class CalendarProviders:
    """Opens a provider per message; what is costly to build (HTTP pools, token caches) lives here."""

    def __init__(self, settings: Settings, redis):
        self.settings = settings
        self.redis = redis
        self.graph = GraphConnections(settings, redis)

    def open(self, config: IntegrationConfig, grant: Grant) -> CalendarProvider:
        if config.integration == Integration.GOOGLE_CALENDAR:
            return GoogleCalendarProvider.open(self.settings, self.redis, grant, config.org_id, config.user_id,
                                               calendar_id=config.target_id or "primary")
        if config.integration == Integration.MICROSOFT_CALENDAR:
            # Only the user's own calendar ("My Events"): an app-only grant acts on the user's mailbox.
            return self.graph.calendar(grant, org_id=config.org_id, user_id=config.user_id,
                                       mailbox=grant.account_email, calendar_id=_graph_calendar(config.target_id))
        raise ValueError(f"{config.integration.value} is not a calendar integration")

    async def aclose(self) -> None:
        await self.graph.aclose()


def _graph_calendar(target_id: str | None) -> str | None:
    """The Graph calendar id of the target; None (the default calendar) for none or Google's "primary"."""
    return None if target_id in (None, "", "primary") else target_id
