"""What every message on the bus shares: strict validation and a schema version.

Messages are the contract between services that are deployed separately, so an unknown field is an
error (it would be silently lost) and every model states the version of its shape.
"""
from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@\-]+$")]
"""An org, user or record id: safe inside a Kafka key and a Redis key (no ':' or spaces)."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = Field(1, description="version of this message's shape")

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str):
        return cls.model_validate_json(raw)


def user_key(org_id: str, user_id: str, integration: str) -> str:
    """The ordering key of everything that touches one user's calendar, mailbox or folder."""
    return f"{org_id}:{user_id}:{integration}"
