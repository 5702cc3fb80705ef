"""`/_sandbox/gmail`: deliver mail into a sandbox Gmail mailbox, look at it (messages, the watch), expire
its history, and point a Pub/Sub topic at a push endpoint (what a push subscription does at Google)."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from sandbox.google.gmail_store import GmailStore, Mailbox


class PushSubscription(BaseModel):
    topic: str
    push_endpoint: str


def control_router(sandbox, store: GmailStore) -> APIRouter:
    api = APIRouter(prefix="/_sandbox", tags=["sandbox gmail"])

    def mailbox(address: str) -> Mailbox:
        account = sandbox.state.account_by_email("google", address)
        if account is None:
            raise HTTPException(404, f"no sandbox Google account {address}")
        return store.mailbox(account.id, account.email)

    @api.post("/gmail/{address}/messages", status_code=201)
    async def deliver(address: str, request: Request) -> dict:
        """The body is the raw RFC 2822 message, as an MTA hands it over."""
        message = store.deliver(mailbox(address), await request.body())
        return {"id": message.id, "threadId": message.thread_id, "historyId": str(message.history_id)}

    @api.get("/gmail/{address}")
    def inspect(address: str) -> dict:
        """What a test checks from outside: how many messages, and the watch if one is open."""
        box = mailbox(address)
        with store.lock:
            watch = box.watch and {"topic": box.watch.topic, "expiration": str(box.watch.expiration_ms)}
            return {"emailAddress": box.email, "messages": len(box.messages), "historyId": str(box.history_id),
                    "watch": watch}

    @api.post("/gmail/{address}/expire-history")
    def expire_history(address: str) -> dict:
        box = mailbox(address)
        store.expire_history(box)
        return {"oldestHistoryId": str(box.oldest_history_id)}

    @api.post("/pubsub/subscriptions", status_code=201)
    def subscribe(body: PushSubscription) -> dict:
        with store.lock:
            store.push_endpoints[body.topic] = body.push_endpoint
        return {"topic": body.topic, "pushEndpoint": body.push_endpoint}

    return api
