"""The faust consumer of every worker asks the broker to hold an empty fetch no longer than the setting.

faust fixes 1.5 s; on Tansu, which holds a fetch that long even when records arrive, that was the delay of
each hop between two workers. Nothing connects here: the consumer is built, not started.
"""
from services.common.bus import create_faust_app
from services.common.settings import Settings


async def test_worker_consumer_takes_the_fetch_wait_setting():
    app = create_faust_app("fetch-wait", Settings(consumer_fetch_max_wait_ms=70))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 70

