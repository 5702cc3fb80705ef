"""Which conversation a message belongs to, so the CRM shows mail as threads.

Gmail says it outright (threadId). Elsewhere the References header lists the thread from its root,
and In-Reply-To names the parent; a message whose ancestors we already placed joins their thread even
when its own headers are cut short (many clients keep only the last few References).
"""
from __future__ import annotations

from collections.abc import Mapping

from services.mail_fetch.parsing import ParsedMessage


def ancestor_ids(message: ParsedMessage) -> list[str]:
    """The ids this message refers to, root first: what to look up in the threads already known."""
    ids: list[str] = []
    for message_id in (*message.references, *message.in_reply_to):
        if message_id not in ids and message_id != message.message_id:
            ids.append(message_id)
    return ids


def thread_id(message: ParsedMessage, known_threads: Mapping[str, str], gmail_thread_id: str | None = None) -> str:
    """Gmail's threadId; else the thread of the earliest ancestor already known; else the root id."""
    if gmail_thread_id:
        return gmail_thread_id
    ancestors = ancestor_ids(message)
    for ancestor in ancestors:
        if ancestor in known_threads:
            return known_threads[ancestor]
    if message.message_id in known_threads:
        return known_threads[message.message_id]
    return ancestors[0] if ancestors else message.message_id
