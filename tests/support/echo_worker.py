"""A worker built the way every crmsync worker is, whose handler misbehaves on request.

fields.fail_transient: fail transiently that many times first; fields.boom: raise an unexpected error;
fields.hold_s: take that long, as a slow provider call would. Anything handled is echoed to `test.echo`,
so a test can see what got through and in which order. ECHO_CONCURRENCY: handled_agent's concurrency.
"""
from __future__ import annotations

import asyncio
import collections
import os

from schemas import CrmChange
from services.common.handling import InboundRecord
from services.common.retry import TransientError
from services.common.settings import Settings
from services.common.topics import TopicSpec
from services.common.worker import FaustPublisher, handled_agent, new_worker_app, run_worker

INPUT = TopicSpec("test.echo.input")
OUTPUT = TopicSpec("test.echo", has_dlq=False)

settings = Settings()
app = new_worker_app("echo", settings)
publisher = FaustPublisher(app)
failures: collections.Counter = collections.Counter()


async def echo(change: CrmChange, record: InboundRecord) -> None:
    if change.fields.get("boom"):
        raise RuntimeError("boom requested")
    wanted = int(change.fields.get("fail_transient", 0))
    if failures[change.record_id] < wanted:
        failures[change.record_id] += 1
        raise TransientError("throttled", retry_after_s=0.01)
    await asyncio.sleep(float(change.fields.get("hold_s", 0)))
    await publisher.publish(OUTPUT.name, change.record_id, change)


handled_agent(app, INPUT, CrmChange, echo, worker="echo", settings=settings,
              concurrency=int(os.environ.get("ECHO_CONCURRENCY", "1")))

if __name__ == "__main__":
    run_worker(app, settings, "echo", extra_topics=(INPUT, OUTPUT))
