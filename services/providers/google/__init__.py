"""Google adapters over the real google-api-python-client: calendar.py (calendar_sync's provider),
gmail.py (mail_fetch's Gmail client).

client.py holds what an async adapter needs around the synchronous client: OAuth credentials refreshed
for real from a stored grant, a thread pool with a client per thread, the shared per-user quota, and
Google's errors turned into what the engines act on.
"""
