"""The OAuth `state` of a connect link: what the callback needs to finish, single use, short lived.

The state value is the only thing the browser carries back; everything else (whose integration it is,
the address expected, PKCE verifier and nonce) stays here in Redis, encrypted like every secret at rest,
and expires after `oauth_state_ttl_s`. Taking it deletes it (GETDEL), so a replayed callback finds
nothing, and so does a forged one.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Literal

import redis.asyncio as aioredis

from services.common.secrets import SecretBox, SecretBoxError
from services.common.state import key

Provider = Literal["google", "microsoft"]


@dataclass(frozen=True)
class PendingConnect:
    provider: Provider
    org_id: str
    user_id: str
    integration: str
    expected_email: str
    allow_other_address: bool = False
    admin_consent: bool = False
    flow: dict = field(default_factory=dict)  # Google: the PKCE code_verifier; Microsoft: MSAL's auth code flow


class PendingConnects:
    def __init__(self, redis: aioredis.Redis, secrets_box: SecretBox, ttl_s: int):
        self.redis = redis
        self.secrets = secrets_box
        self.ttl_s = ttl_s

    @staticmethod
    def new_state() -> str:
        return secrets.token_urlsafe(32)

    async def put(self, state: str, pending: PendingConnect) -> None:
        sealed = self.secrets.encrypt(json.dumps(asdict(pending)))
        await self.redis.set(key("oauth_state", state), sealed, ex=self.ttl_s)

    async def take(self, state: str) -> PendingConnect | None:
        """The pending connect for `state`, removed as it is read; None if unknown, used or expired."""
        if not state or len(state) > 128 or ":" in state:
            return None
        sealed = await self.redis.getdel(key("oauth_state", state))
        if sealed is None:
            return None
        try:
            return PendingConnect(**json.loads(self.secrets.decrypt(sealed)))
        except (SecretBoxError, TypeError, ValueError):
            return None
