"""GraphClient.batch: one /$batch at Graph at a time per client (a batch already takes the mailbox's
4 concurrent calls) and one quota call at a time, however many callers batch side by side, each caller's
answers in its order."""
from __future__ import annotations

import asyncio

from services.common.settings import Settings
from services.providers.microsoft.graph import BatchRequest, GraphClient


class _Tokens:
    async def access_token(self) -> str:
        return "token"

    def invalidate(self) -> None:
        pass


class _Bucket:
    """The shared bucket is a Redis round trip: counted, as the process's Redis connections are few."""

    def __init__(self):
        self.at_once = 0
        self.most_at_once = 0

    async def acquire(self, cost: float = 1) -> float:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        await asyncio.sleep(0.001)
        self.at_once -= 1
        return 0.0


class _SlowGraph:
    """Answers every part 201 after a while, counting the exchanges at Graph at once."""

    def __init__(self):
        self.at_once = 0
        self.most_at_once = 0
        self.exchanges = 0

    async def request(self, method: str, url: str, *, json=None, headers=None):
        self.at_once += 1
        self.exchanges += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        await asyncio.sleep(0.005)
        self.at_once -= 1
        if url.endswith("/$batch"):
            return 200, {"responses": [{"id": p["id"], "status": 201, "body": {"url": p["url"]}}
                                       for p in reversed(json["requests"])]}, {}
        return 201, {"url": url.split("/v1.0", 1)[1]}, {}


def test_callers_batching_side_by_side_have_one_batch_at_graph_at_a_time():
    graph, bucket = _SlowGraph(), _Bucket()
    client = GraphClient(Settings(microsoft_graph_base_url="http://graph.test"), _Tokens(), bucket, http=graph)
    callers = [[BatchRequest("POST", f"/users/u/events?caller={c}&n={n}", {}) for n in range(45)] for c in range(3)]

    async def run():
        return await asyncio.gather(*(client.batch(requests) for requests in callers))

    answered = asyncio.run(run())

    assert graph.most_at_once == 1
    assert bucket.most_at_once == 1, "one batch waits for the turn with its quota taken, the others before taking it"
    assert graph.exchanges == 3 * 3  # 45 requests: batches of 20, 20 and 5 for each caller
    for requests, answers in zip(callers, answered):
        assert [a.body["url"] for a in answers] == [r.url for r in requests]
