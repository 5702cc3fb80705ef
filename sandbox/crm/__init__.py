"""The reference CRM backend: applies crm.commands idempotently and publishes crm.changes."""
