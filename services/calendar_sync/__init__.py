"""calendar_sync: Google Calendar and Microsoft 365 calendars <-> CRM events, on one engine."""
