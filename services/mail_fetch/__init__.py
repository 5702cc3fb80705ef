"""mail_fetch: Gmail (push + history) and POP3 (UIDL) mailboxes -> mail attached to CRM records."""
