"""The message handler's contract, without a broker: each record ends handled or dead-lettered."""
import asyncio

import pytest

from schemas import CrmChange, DeadLetter
from services.common.handling import InboundRecord, MessageHandler
from services.common.retry import PermanentError, RetryPolicy, TransientError
from tests.support.factories import crm_change


class DeadLetterBox:
    """Collects what the handler would publish; fails the first `failures` publishes."""

    def __init__(self, failures: int = 0):
        self.letters: list[tuple[str, DeadLetter]] = []
        self.failures = failures

    async def publish(self, topic, key, message):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.letters.append((topic, message))


def record(value: bytes | None, offset: int = 5) -> InboundRecord:
    return InboundRecord("crm.changes", 2, offset, b"k", value)


def run(handle, value, box=None, attempts=3):
    box = box or DeadLetterBox()
    handler = MessageHandler("w", CrmChange, handle, box, RetryPolicy(attempts, 0, 0))
    return asyncio.run(handler(record(value))), box


async def ok(message, rec):
    return None


def test_valid_message_is_handled():
    outcome, box = run(ok, crm_change().to_bytes())
    assert outcome == "ok" and box.letters == []


def test_undecodable_message_is_dead_lettered_with_its_origin():
    outcome, box = run(ok, b"\xff\xfe")
    [(topic, letter)] = box.letters
    assert outcome == "dead_lettered" and topic == "crm.changes.dlq"
    assert (letter.topic, letter.partition, letter.offset, letter.key) == ("crm.changes", 2, 5, "k")
    assert letter.reason.startswith("invalid CrmChange")
    assert letter.value == "\\xff\\xfe"


def test_permanent_error_is_dead_lettered_with_its_reason():
    async def refuse(message, rec):
        raise PermanentError("end before start")

    _, box = run(refuse, crm_change().to_bytes())
    assert box.letters[0][1].reason == "end before start"


def test_transient_error_is_retried_and_counted_in_the_dead_letter_when_it_persists():
    calls = []

    async def throttled(message, rec):
        calls.append(1)
        raise TransientError("429 from provider")

    _, box = run(throttled, crm_change().to_bytes(), attempts=4)
    assert len(calls) == 4
    assert box.letters[0][1].attempts == 4
    assert box.letters[0][1].reason == "gave up after 4 attempts: 429 from provider"


def test_dead_letter_publish_is_retried_until_it_succeeds():
    outcome, box = run(ok, b"nope", box=DeadLetterBox(failures=2))
    assert outcome == "dead_lettered" and len(box.letters) == 1


def test_shutdown_is_not_swallowed():
    async def cancelled(message, rec):
        raise asyncio.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        run(cancelled, crm_change().to_bytes())


def test_tombstone_reaches_the_handler_as_none():
    seen = []

    async def remember(message, rec):
        seen.append(message)

    run(remember, None)
    assert seen == [None]


def test_a_huge_message_is_dead_lettered_with_its_value_cut_not_refused():
    outcome, box = run(ok, b"x" * 3_000_000)
    letter = box.letters[0][1]
    assert outcome == "dead_lettered"
    assert len(letter.value) < 600_000 and letter.value.endswith("[cut: 3000000 characters in all]")
