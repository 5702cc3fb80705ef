"""Prometheus metrics, declared once here and imported where they are counted."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_HANDLED = Counter(
    "crmsync_messages_handled_total", "Messages a worker finished, by outcome", ["worker", "topic", "outcome"]
)
HANDLER_RETRIES = Counter("crmsync_handler_retries_total", "Transient failures retried", ["worker", "topic"])
DEAD_LETTERS = Counter("crmsync_dead_letters_total", "Messages sent to a DLQ", ["worker", "topic", "error_type"])
CHANGES_ACCEPTED = Counter("crmsync_ingest_changes_accepted_total", "CRM changes published by ingest")
REQUESTS_REJECTED = Counter(
    "crmsync_ingest_requests_rejected_total", "Requests refused by ingest", ["endpoint", "reason"]
)
WEBHOOKS_REFUSED = Counter(
    "crmsync_webhooks_refused_total", "Provider notifications refused as forged or unknown", ["provider", "reason"]
)
WEBHOOK_DUPLICATES = Counter(
    "crmsync_webhook_duplicates_total", "Provider deliveries seen before and not published again", ["provider"]
)
NOTIFICATIONS_PUBLISHED = Counter(
    "crmsync_notifications_published_total", "Provider notifications published", ["provider", "kind"]
)
REQUEST_LATENCY = Histogram(
    "crmsync_ingest_request_seconds",
    "Ingest request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INTEGRATION_STATUS = Gauge(
    "crmsync_integration_auth_failed", "1 when an integration cannot authenticate", ["org", "user", "integration"]
)
