"""Mail kept for re-linking. While an org re-links earlier mail, what each fetched message's attach_email
says is kept, indexed by every address the message carries, so that a record which later gets one of
those addresses can be given the mail already fetched (relink.py).

Bounded twice: per address only the newest KEEP_PER_ADDRESS messages, and each message for KEEP_S.
Only orgs that re-link pay for it, and so mail fetched while re-linking was off is not kept and cannot
be re-linked later: the admin API says so. Keys:

    crmsync:mailkept:<org>:msg:<digest>      str   zlib-compressed JSON: mailbox, message key, fields
    crmsync:mailkept:<org>:addr:<address>    zset  digests of the messages carrying it, by message time
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from schemas import EmailAttachmentInfo
from services.common.state import key
from services.mail_fetch.address_index import address_part
from services.mail_fetch.commands import MailboxRef

KIND = "mailkept"
KEEP_PER_ADDRESS = 200
KEEP_S = 90 * 24 * 3600


@dataclass(frozen=True)
class KeptMessage:
    mailbox: MailboxRef
    key: str  # the message's key in its mailbox (commands.message_key): idempotency keys derive from it
    fields: dict  # commands.message_fields: what an attach_email says of the message


class KeptMail:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def keep(self, org_id: str, messages: list[tuple[KeptMessage, list[str], dt.datetime]]) -> None:
        """Keep each message under each of its parties' addresses, scored by the message's time."""
        if not messages:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for message, parties, when in messages:
                digest = _digest(message)
                pipe.set(key(KIND, org_id, "msg", digest), _encode(message), ex=KEEP_S)
                for address in parties:
                    by_address = key(KIND, org_id, "addr", address_part(address))
                    pipe.zadd(by_address, {digest: when.timestamp()})
                    pipe.zremrangebyrank(by_address, 0, -KEEP_PER_ADDRESS - 1)
                    pipe.expire(by_address, KEEP_S)
            await pipe.execute()

    async def carrying(self, org_id: str, address: str) -> list[KeptMessage]:
        """The kept messages that carry an address, newest first."""
        digests = await self.redis.zrevrange(key(KIND, org_id, "addr", address_part(address)), 0, -1)
        if not digests:
            return []
        payloads = await self.redis.mget([key(KIND, org_id, "msg", d) for d in digests])
        return [_decode(p) for p in payloads if p is not None]


def _digest(message: KeptMessage) -> str:
    return hashlib.sha256(f"{message.mailbox.name}\0{message.key}".encode()).hexdigest()[:32]


def _encode(message: KeptMessage) -> str:
    fields = dict(message.fields)
    fields["date"] = fields["date"].isoformat() if fields.get("date") else None
    fields["attachments"] = [a.model_dump(mode="json") for a in fields.get("attachments", ())]
    mailbox = message.mailbox
    data = {"mailbox": [mailbox.org_id, mailbox.owner_id, mailbox.name, mailbox.visibility],
            "key": message.key, "fields": fields}
    return base64.b64encode(zlib.compress(json.dumps(data).encode())).decode()  # the client decodes text


def _decode(payload: str) -> KeptMessage:
    data = json.loads(zlib.decompress(base64.b64decode(payload)))
    fields = data["fields"]
    fields["date"] = dt.datetime.fromisoformat(fields["date"]) if fields.get("date") else None
    fields["attachments"] = [EmailAttachmentInfo.model_validate(a) for a in fields.get("attachments", ())]
    return KeptMessage(MailboxRef(*data["mailbox"]), data["key"], fields)
