"""The one way every worker handles a message: decode, retry what is transient, dead-letter the rest.

An exception must never escape into faust: an agent that raises skips the offset of the message that
failed and the stream dies with it (faust-streaming issue 527). So each message ends in exactly one of
two ways: handled, or written to its topic's DLQ with the reason and its origin. Only then is it
acknowledged. Cancellation (shutdown) is the exception: the offset is not committed, and the message
is delivered again after the restart.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from pydantic import ValidationError

from schemas.base import Message
from schemas.dead_letter import DeadLetter
from services.common.logging import get_logger
from services.common.metrics import DEAD_LETTERS, HANDLER_RETRIES, MESSAGES_HANDLED
from services.common.retry import PermanentError, RetryPolicy, TransientError, retry_async
from services.common.topics import dlq_name

log = get_logger(__name__)


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # When this process took the record from its stream (time.monotonic), before it waited for its key's
    # turn: a handler may see that work begun since then has already covered it.
    received_at: float = dataclasses.field(default_factory=time.monotonic, compare=False)

    @classmethod
    def from_faust_event(cls, event) -> InboundRecord:
        message = event.message
        return cls(message.topic, message.partition, message.offset, message.key, message.value)

    @classmethod
    def from_consumer_record(cls, record) -> InboundRecord:
        return cls(record.topic, record.partition, record.offset, record.key, record.value)


class DeadLetterPublisher(Protocol):
    async def publish(self, topic: str, key: str | None, message: Message) -> None: ...


def describe_validation_error(model: type[Message], exc: ValidationError) -> str:
    """'invalid CrmChange: module: Input should be ...' naming each offending field."""
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "value"
        problems.append(f"{where}: {error.get('msg')}")
    return f"invalid {model.__name__}: " + "; ".join(problems)


def _log_context(message: Message | None, record: InboundRecord) -> dict:
    """What every log line about this message names: its origin, and the org, user and integration."""
    context = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    for field in ("org_id", "user_id", "integration"):
        value = getattr(message, field, None)
        if value is not None:
            context[field] = getattr(value, "value", value)
    if "user_id" not in context and getattr(message, "owner_id", None):
        context["user_id"] = message.owner_id
    return context


DEAD_LETTER_VALUE_LIMIT = 512 * 1024


def _kept_value(value: bytes | None) -> str:
    """The original value as text; a huge one is cut (its origin, topic/partition/offset, holds it whole)."""
    text = (value or b"").decode("utf-8", "backslashreplace")
    if len(text) <= DEAD_LETTER_VALUE_LIMIT:
        return text
    return text[:DEAD_LETTER_VALUE_LIMIT] + f"... [cut: {len(text)} characters in all]"


class MessageHandler:
    """Wraps a worker's handler function; calling it with a record never raises (but for shutdown)."""

    def __init__(
        self,
        worker: str,
        model: type[Message] | None,
        handle: Callable[[Message | None, InboundRecord], Awaitable[None]],
        dead_letters: DeadLetterPublisher,
        policy: RetryPolicy,
    ):
        self.worker = worker
        self.model = model
        self.handle = handle
        self.dead_letters = dead_letters
        self.policy = policy

    async def __call__(self, record: InboundRecord) -> str:
        attempts = 1
        try:
            message = self._decode(record)
            context = _log_context(message, record)

            def count_retry(attempt: int, exc: TransientError, wait: float) -> None:
                nonlocal attempts
                attempts = attempt + 1
                HANDLER_RETRIES.labels(self.worker, record.topic).inc()
                log.warning("transient failure, retrying", attempt=attempt, wait_s=round(wait, 3), error=str(exc))

            with structlog.contextvars.bound_contextvars(**context):
                await retry_async(lambda: self.handle(message, record), self.policy, on_retry=count_retry)
        except asyncio.CancelledError:
            raise
        except ValidationError as exc:
            return await self._dead_letter(record, describe_validation_error(self.model, exc), exc, attempts)
        except TransientError as exc:
            reason = f"gave up after {attempts} attempts: {exc}"
            return await self._dead_letter(record, reason, exc, attempts)
        except PermanentError as exc:
            return await self._dead_letter(record, str(exc), exc, attempts)
        except Exception as exc:  # a bug or an unforeseen input: park it, keep the stream alive
            log.exception("unexpected error handling message", topic=record.topic, offset=record.offset)
            return await self._dead_letter(record, f"unexpected {type(exc).__name__}: {exc}", exc, attempts)
        MESSAGES_HANDLED.labels(self.worker, record.topic, "ok").inc()
        return "ok"

    def _decode(self, record: InboundRecord) -> Message | None:
        if self.model is None or record.value is None:
            return None
        return self.model.from_bytes(record.value)

    async def _dead_letter(self, record: InboundRecord, reason: str, exc: BaseException, attempts: int) -> str:
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode("utf-8", "backslashreplace") if record.key is not None else None,
            value=_kept_value(record.value),
            reason=reason[:4000],
            error_type=type(exc).__name__,
            attempts=attempts,
            worker=self.worker,
            failed_at=dt.datetime.now(dt.UTC),
        )
        # Acknowledging before the DLQ has the message would lose it: keep trying until it is there.
        attempt = 1
        while True:
            try:
                await self.dead_letters.publish(dlq_name(record.topic), letter.key, letter)
                break
            except asyncio.CancelledError:
                raise
            except Exception as publish_error:  # noqa: BLE001 - whatever the broker says, try again
                wait = self.policy.delay(min(attempt, 10))
                log.error("cannot write dead letter, retrying", error=str(publish_error), wait_s=wait)
                await asyncio.sleep(wait)
                attempt += 1
        DEAD_LETTERS.labels(self.worker, record.topic, letter.error_type).inc()
        MESSAGES_HANDLED.labels(self.worker, record.topic, "dead_lettered").inc()
        log.warning("message dead-lettered", topic=record.topic, offset=record.offset, reason=letter.reason)
        return "dead_lettered"
