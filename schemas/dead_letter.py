"""A message a worker could not handle, kept with why and where it came from so it can be replayed."""
from __future__ import annotations

from pydantic import AwareDatetime, Field

from schemas.base import Message


class DeadLetter(Message):
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = None
    value: str = Field(description="the original value, as text (undecodable bytes backslash-escaped)")
    reason: str = Field(min_length=1, description="what was wrong, in words a person can act on")
    error_type: str
    attempts: int = Field(ge=1)
    worker: str
    failed_at: AwareDatetime
