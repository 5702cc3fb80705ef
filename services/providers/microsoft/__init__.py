"""Microsoft Graph adapters: tokens from MSAL (tokens.py), an async Graph client with throttling, retries
and JSON batching (graph.py), subscriptions (subscriptions.py) and the Outlook calendar provider
(calendar.py, with the ids it writes in calendar_ids.py)."""
