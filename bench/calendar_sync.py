"""calendar_sync end to end, Google and Microsoft: first syncs against the sandbox's raw batched insert
rate, and latency of single changes both ways at a steady rate.

The real stack, each part its own process as in production: broker and Redis (embedded unless
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set), the sandbox, ingest, the reference CRM and calendar_sync.

(a) First sync, two-way configuration, for one user with 5,000 events and for 50 users with 200 each:
  - CRM -> provider: the events are in the CRM (created over its API, indexed by the worker); the clock
    runs from the admin enabling every user's configuration until every user's first sync is done (the
    worker marks it ok once every event is written and mapped); each calendar is then counted.
  - provider -> CRM: the events are in the calendars; the clock runs from enabling until the reference
    CRM holds every one of them (commands applied) and every first sync is done.
  Events are all ahead within the 3-month window and at the 5,000 cap, so nothing is left out.
  CALENDAR_BENCH_DIRECTIONS (crm_to_provider, provider_to_crm) and CALENDAR_BENCH_SHAPES (1x5000,
  50x200), comma-separated, run only those cases (unset: all); the latency part still gets its 50 users.
  Events/s, the provider API calls it took (sandbox counters) and calls per event, against the
  sandbox's raw batched insert rate measured twice in the same run, before and after (Google: batches
  of 50 through google-api-python-client, bench/sandbox_calendar.py; Graph: $batch of 20,
  bench/sandbox_graph.py). Target: >= 0.5 of it.
(b) Latency at LATENCY_RATE_PER_S changes/s for LATENCY_SECONDS, spread over the 50 users (each change
  to an event of its own, so that each write can be told apart afterwards):
  - CRM -> provider: a signed CrmChange posted to ingest (as the CRM posts it) until the provider holds
    it: the event's `updated` (Google, ms) or `lastModifiedDateTime` (Graph) minus the time of the post.
  - provider -> CRM: a user's edit through the provider API until the reference CRM applied the command:
    the CRM record's `modified_at` (set when the command is applied) minus the edit's own `updated` /
    `lastModifiedDateTime` in the provider's answer.
  Both are wall clocks of this machine. p50 and p99; target p99 < 1 s.

Parts: CALENDAR_BENCH_PARTS=latency runs (b) alone (its 50 users get only the events the changes need,
and neither raw rate nor the one-user first sync is measured: minutes instead of half an hour);
CALENDAR_BENCH_PROVIDERS=google (or microsoft) one provider; CALENDAR_BENCH_LATENCY_SECONDS a shorter run.
The worker takes its settings from this process's environment (e.g. CRMSYNC_KEYED_CONCURRENCY).

Quota: the sandbox enforces none, and Google allows a user 600 calls a minute, which alone would hold
one user's 5,000-event first sync to ~8 minutes whatever the code does. The worker's shared bucket is
therefore sized GOOGLE_QUOTA_PER_MIN here; the figures also say how long the real quota makes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import google_auth_httplib2
import httplib2
import httpx

import bench.sandbox_calendar as raw_google
import bench.sandbox_graph as raw_graph
from bench._calendar_people import GOOGLE_BATCH, INTEGRATION, Admin, Crm, Sandbox, crm_fields
from bench._infra import broker_and_redis, free_port, percentile, service
from bench.sandbox_calendar import _batched as google_batched
from bench.sandbox_calendar import _Meter
from bench.sandbox_graph import _batched as graph_batched
from schemas import ChangeSource, CrmChange, CrmModule, CrmOp
from services.common.settings import DEV_FERNET_KEY, Settings
from services.common.topics import ensure_topics
from services.ingest.client import AsyncIngestClient
from tests.fixtures.calendar_stack import calendar_env
from tests.fixtures.net import wait_for
from tests.support.factories import unique_org

PROVIDERS = tuple(os.environ.get("CALENDAR_BENCH_PROVIDERS", "google,microsoft").split(","))
PARTS = frozenset(os.environ.get("CALENDAR_BENCH_PARTS", "first_sync,latency").split(","))
FIRST_SYNCS = ((1, 5_000), (50, 200))  # (users, events per user)
LATENCY_USERS = 50  # the users of the 50-user first syncs, whose events the latency runs change
LATENCY_RATE_PER_S = 100
LATENCY_SECONDS = int(os.environ.get("CALENDAR_BENCH_LATENCY_SECONDS", "60"))
WORKERS = 1
GOOGLE_QUOTA_PER_MIN = 1_000_000
GOOGLE_REAL_QUOTA_PER_MIN = 600
FIRST_SYNC_TIMEOUT_S = 600
TARGET_RATIO = 0.5
TARGET_P99_S = 1.0
SENDERS = 32  # requests of the latency runs in flight at once, at most


class Bench:
    def __init__(self, sandbox: Sandbox, sandbox_pid: int, crm: Crm, admin: Admin, ingest_url: str,
                 settings: Settings):
        self.sandbox, self.sandbox_pid, self.crm, self.admin = sandbox, sandbox_pid, crm, admin
        self.ingest_url, self.settings = ingest_url, settings

    # --- (a) first syncs --------------------------------------------------------------------------
    def crm_to_provider(self, provider: str, users: list[str], per_user: int) -> tuple[dict, dict]:
        org, integration = unique_org(), INTEGRATION[provider]
        accounts = self.sandbox.accounts(provider, org, users)
        fields = {user: [crm_fields(f"{user} crm {n}", n) for n in range(per_user)] for user in users}
        records = {user: self.crm.create_events(org, user, fields[user]) for user in users}
        wait_for(lambda: self.admin.indexed(org, users) >= len(users) * per_user, 120,
                 what="the worker's index of the CRM events")
        figures = self._timed(provider, org, users, per_user,
                              lambda: self.admin.synced(org, users, integration) == len(users))
        listed = self._provider_events(provider, accounts)
        counts = Counter(listed[user].__len__() for user in users)
        if counts != Counter({per_user: len(users)}):
            raise RuntimeError(f"{provider} calendars hold {dict(counts)} events (count: users), not {per_user} each")
        return figures, {"org": org, "accounts": accounts, "records": records, "fields": fields}

    def provider_to_crm(self, provider: str, users: list[str], per_user: int) -> tuple[dict, dict]:
        org, integration = unique_org(), INTEGRATION[provider]
        accounts = self.sandbox.accounts(provider, org, users)
        seed = self.sandbox.seed_google if provider == "google" else self.sandbox.seed_outlook
        events = {user: seed(accounts[user], [f"{user} seeded {n}" for n in range(per_user)]) for user in users}
        total = len(users) * per_user
        figures = self._timed(provider, org, users, per_user, lambda: self.crm.event_count(org) >= total
                              and self.admin.synced(org, users, integration) == len(users))
        held = self.crm.all_events(org)
        if len(held) != total:
            raise RuntimeError(f"the CRM holds {len(held)} events of {org}, not {total}")
        record_of_title = {r["fields"]["Event_Title"]: r["id"] for r in held.values()}
        records = {user: [record_of_title[f"{user} seeded {n}"] for n in range(per_user)] for user in users}
        return figures, {"org": org, "accounts": accounts, "events": events, "records": records}

    def _timed(self, provider: str, org: str, users: list[str], per_user: int, done) -> dict:
        before = self.sandbox.counters()
        started = time.perf_counter()
        self.admin.enable(org, users, INTEGRATION[provider])
        wait_for(done, FIRST_SYNC_TIMEOUT_S, interval_s=0.05, what=f"first sync of {org}")
        elapsed = time.perf_counter() - started
        calls = _delta(before, self.sandbox.counters())
        total = len(users) * per_user
        return {"events": total, "seconds": round(elapsed, 2), "events_per_s": round(total / elapsed, 1),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "api_calls": sum(calls.values()), "api_calls_per_event": round(sum(calls.values()) / total, 3),
                "api_calls_by_route": dict(calls.most_common(6))}

    def _provider_events(self, provider: str, accounts: dict[str, dict]) -> dict[str, list[dict]]:
        read = self.sandbox.google_events if provider == "google" else self.sandbox.outlook_events
        return {user: read(account) for user, account in accounts.items()}

    # --- the sandbox's own rate -------------------------------------------------------------------
    def raw_rate(self, provider: str) -> float:
        account = self.sandbox.http.post("/_sandbox/accounts", json={
            "provider": provider, "email": f"raw-{unique_org()}@bench.example"}).raise_for_status().json()
        if provider == "microsoft":
            count = raw_graph.BATCHED_CREATES // raw_graph.BATCH_SIZE * raw_graph.BATCH_SIZE
            work = graph_batched(self.sandbox.url, account["id"], account["access_token"])
            return _Meter(self.sandbox_pid).measure(count, work)["inserts_per_s"]
        credentials = self.sandbox.credentials(account)
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=60))
        count = raw_google.BATCHED_INSERTS // GOOGLE_BATCH * GOOGLE_BATCH
        before = self.sandbox.counters()
        figures = _Meter(self.sandbox_pid).measure(count, google_batched(self.sandbox.url, credentials, GOOGLE_BATCH, http))
        inserted = _delta(before, self.sandbox.counters())["POST /calendar/v3/calendars/{calendarId}/events"]
        if inserted != count:
            raise RuntimeError(f"the raw batched run made {inserted} inserts, not {count}")
        return figures["inserts_per_s"]

    # --- (b) latency ------------------------------------------------------------------------------
    def crm_to_provider_latency(self, provider: str, synced: dict) -> dict:
        """Signed changes posted to ingest at a steady rate, each to another event; then each event's
        write time read back from the provider."""
        users = list(synced["accounts"])
        count = LATENCY_RATE_PER_S * LATENCY_SECONDS
        targets = [(users[i % len(users)], i // len(users)) for i in range(count)]
        before = self.sandbox.counters()
        sent, answered = asyncio.run(self._post_changes(synced, targets))
        writes = sum(n for route, n in _delta(before, self.sandbox.counters()).items() if route.startswith("PATCH "))
        wait_for(lambda: sum(n for route, n in _delta(before, self.sandbox.counters()).items()
                             if route.startswith("PATCH ")) >= count, 120, interval_s=0.5,
                 what=f"{count} provider writes ({writes} when the last change was posted)")
        written: dict[str, float] = {}
        for events in self._provider_events(provider, synced["accounts"]).values():
            for event in events:
                title = event.get("summary") or event.get("subject") or ""
                if title.startswith("latency "):
                    written[title] = _instant(event.get("updated") or event["lastModifiedDateTime"])
        latencies = [(sent[i], written[f"latency {i}"] - sent[i]) for i in range(count) if f"latency {i}" in written]
        return _latency_figures(latencies, count) | _calls_per_change(before, self.sandbox.counters(), count) | {
            "ingest_answer_p50_s": round(percentile(answered, 50), 3),
            "ingest_answer_p99_s": round(percentile(answered, 99), 3)}

    async def _post_changes(self, synced: dict, targets: list[tuple[str, int]]) -> tuple[dict[int, float], list[float]]:
        """When each change was posted, and how long ingest took to answer each (part of the latency)."""
        client = AsyncIngestClient(self.ingest_url, self.settings.hmac_secret, timeout_s=60.0)
        sent: dict[int, float] = {}
        answered: list[float] = []

        async def post(i: int, user: str, n: int) -> None:
            now = dt.datetime.now(dt.UTC)
            change = CrmChange(org_id=synced["org"], module=CrmModule.EVENTS, record_id=synced["records"][user][n],
                               op=CrmOp.UPDATED, owner_id=user, source=ChangeSource.UI, modified_at=now,
                               fields={**synced["fields"][user][n], "Event_Title": f"latency {i}"})
            sent[i] = now.timestamp()
            answer = await client.post_changes([change])
            answered.append(time.time() - sent[i])
            if answer.status_code != 202:
                raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text[:200]}")

        try:
            await _paced(post, targets)
        finally:
            await client.aclose()
        return sent, answered

    def provider_to_crm_latency(self, provider: str, synced: dict) -> dict:
        """Users' edits through the provider API at a steady rate, each to another event; then each
        CRM record's apply time."""
        users = list(synced["accounts"])
        count = LATENCY_RATE_PER_S * LATENCY_SECONDS
        targets = [(users[i % len(users)], i // len(users)) for i in range(count)]
        before = self.sandbox.counters()
        edited = asyncio.run(self._edit_events(provider, synced, targets))
        records = {synced["records"][user][n]: i for i, (user, n) in enumerate(targets)}

        def shows_edit(record_id: str, record: dict) -> bool:
            return record["fields"]["Event_Title"] == f"latency {records[record_id]}"

        def applied() -> dict[str, dict]:
            held = self.crm.events(synced["org"], records)
            return held if all(shows_edit(i, r) for i, r in held.items()) else {}

        try:
            held = wait_for(applied, 120, interval_s=0.5, what="every edit in the CRM")
        except AssertionError:
            held = self.crm.events(synced["org"], records)
        done = {i: r for i, r in held.items() if shows_edit(i, r)}
        latencies = [(edited[records[i]], _instant(r["modified_at"]) - edited[records[i]]) for i, r in done.items()]
        unapplied = [{"record": i, "expected": f"latency {n}", "held": held.get(i, {}).get("fields", {}).get("Event_Title")}
                     for i, n in records.items() if i not in done]
        return _latency_figures(latencies, count) | _calls_per_change(before, self.sandbox.counters(), count) | (
            {"unapplied_sample": unapplied[:5]} if unapplied else {})

    async def _edit_events(self, provider: str, synced: dict, targets: list[tuple[str, int]]) -> dict[int, float]:
        edited: dict[int, float] = {}
        async with httpx.AsyncClient(base_url=self.sandbox.url, timeout=30,
                                     limits=httpx.Limits(max_connections=SENDERS)) as http:
            async def edit(i: int, user: str, n: int) -> None:
                account, event_id = synced["accounts"][user], synced["events"][user][n]
                headers = {"Authorization": f"Bearer {account['access_token']}"}
                if provider == "google":
                    answer = await http.patch(f"/calendar/v3/calendars/primary/events/{event_id}", headers=headers,
                                              json={"summary": f"latency {i}"})
                    edited[i] = _instant(answer.raise_for_status().json()["updated"])
                else:
                    answer = await http.patch(f"/v1.0/users/{account['id']}/events/{event_id}", headers=headers,
                                              json={"subject": f"latency {i}"})
                    edited[i] = _instant(answer.raise_for_status().json()["lastModifiedDateTime"])

            await _paced(edit, targets)
        return edited

    def _settle(self, synced: dict) -> None:
        """Wait until the worker has indexed the CRM's echo of every event of a first sync: the latency runs
        measure a steady rate, not the tail of the first syncs' work (which held their first seconds)."""
        users, total = list(synced["records"]), sum(map(len, synced["records"].values()))
        wait_for(lambda: self.admin.indexed(synced["org"], users) >= total, 300, interval_s=0.1,
                 what=f"the worker's index of {synced['org']}'s {total} CRM events")

    # --- per provider -----------------------------------------------------------------------------
    def latency_only(self, provider: str) -> dict:
        """(b) alone: two-way syncs of the 50 users with just the events the changes need, then (b)."""
        per_user = math.ceil(LATENCY_RATE_PER_S * LATENCY_SECONDS / LATENCY_USERS)
        names = [f"u{n}" for n in range(LATENCY_USERS)]
        synced = {direction: sync(provider, names, per_user)[1] for direction, sync in
                  (("crm_to_provider", self.crm_to_provider), ("provider_to_crm", self.provider_to_crm))}
        latency = self._latency(provider, synced)
        verdicts = {f"latency_{name}_p99": _verdict(f["p99_s"] < TARGET_P99_S and not f["missing"])
                    for name, f in latency.items()}
        return {f"latency_{LATENCY_RATE_PER_S}_per_s_{LATENCY_SECONDS}s": latency, "verdicts": verdicts}

    def _latency(self, provider: str, synced: dict) -> dict:
        for org in synced.values():
            self._settle(org)
        latency = {}
        for direction, measure in (("crm_to_provider", self.crm_to_provider_latency),
                                   ("provider_to_crm", self.provider_to_crm_latency)):
            latency[direction] = measure(provider, synced[direction])
            _progress(provider, f"latency_{direction}", latency[direction])
        return latency

    def provider_figures(self, provider: str) -> dict:
        if "first_sync" not in PARTS:
            return self.latency_only(provider)
        raw = [self.raw_rate(provider)]
        first: dict[str, dict] = {}
        latency_orgs = {}
        for users, per_user in FIRST_SYNCS:
            names = [f"u{n}" for n in range(users)]
            for direction, sync in (("crm_to_provider", self.crm_to_provider), ("provider_to_crm", self.provider_to_crm)):
                if not _case_chosen(direction, users, per_user):
                    continue
                figures, synced = sync(provider, names, per_user)
                _progress(provider, f"{direction}_{users}x{per_user}", figures)
                first[f"{direction}_{users}x{per_user}"] = figures
                if users == LATENCY_USERS:
                    latency_orgs[direction] = synced
        raw.append(self.raw_rate(provider))
        baseline = statistics.mean(raw)
        for figures in first.values():
            figures["ratio_to_raw_batched"] = round(figures["events_per_s"] / baseline, 3)
        latency = self._latency(provider, latency_orgs) if "latency" in PARTS else {}
        verdicts = {f"first_sync_{name}_ratio": _verdict(f["ratio_to_raw_batched"] >= TARGET_RATIO)
                    for name, f in first.items()}
        verdicts |= {f"latency_{name}_p99": _verdict(f["p99_s"] < TARGET_P99_S and not f["missing"])
                     for name, f in latency.items()}
        out = {"raw_batched_inserts_per_s": [round(r) for r in raw], "first_sync": first,
               f"latency_{LATENCY_RATE_PER_S}_per_s_{LATENCY_SECONDS}s": latency, "verdicts": verdicts}
        if provider == "google":
            one_user = max(per_user for _, per_user in FIRST_SYNCS)
            out["one_user_first_sync_at_real_quota_s"] = round(
                max(0, one_user - GOOGLE_REAL_QUOTA_PER_MIN) / (GOOGLE_REAL_QUOTA_PER_MIN / 60))
        return out


async def _paced(send, targets: list[tuple[str, int]]) -> None:
    """send(i, user, n) for each target at LATENCY_RATE_PER_S, by SENDERS tasks: a request is started only
    by a free sender, so the HTTP pool never holds thousands of waiting requests (httpx then spent the
    bench's CPU sorting its queue, and requests timed out waiting for a connection to a server at rest).
    A change a slow answer holds up goes out late, and its latency is counted from when it went out."""
    start = time.monotonic() + 0.5
    numbered = iter(enumerate(targets))

    async def sender() -> None:
        for i, (user, n) in numbered:
            await asyncio.sleep(max(0.0, start + i / LATENCY_RATE_PER_S - time.monotonic()))
            await send(i, user, n)

    await asyncio.gather(*(sender() for _ in range(SENDERS)))


def _progress(provider: str, phase: str, figures: dict) -> None:
    """Each phase's figures as soon as they are measured: a long run that fails late still tells."""
    print(json.dumps({"provider": provider, "phase": phase, **figures}), file=sys.stderr, flush=True)


def _delta(before: dict[str, int], after: dict[str, int]) -> Counter:
    return Counter({route: n - before.get(route, 0) for route, n in after.items() if n > before.get(route, 0)})


def _calls_per_change(before: dict[str, int], after: dict[str, int], count: int) -> dict:
    """The provider calls the run took (the bench's own edits included), per change and by route."""
    calls = _delta(before, after)
    return {"api_calls_per_change": round(sum(calls.values()) / count, 2),
            "api_calls_by_route": dict(calls.most_common(5))}


def _case_chosen(direction: str, users: int, per_user: int) -> bool:
    """Whether CALENDAR_BENCH_DIRECTIONS / CALENDAR_BENCH_SHAPES ask for this first sync; the 50-user ones
    run anyway when the latency part needs their users."""
    if users == LATENCY_USERS and "latency" in PARTS:
        return True
    directions = os.environ.get("CALENDAR_BENCH_DIRECTIONS", "crm_to_provider,provider_to_crm").split(",")
    shapes = os.environ.get("CALENDAR_BENCH_SHAPES", "1x5000,50x200").split(",")
    return direction in directions and f"{users}x{per_user}" in shapes


def _instant(text: str) -> float:
    """An RFC 3339 time (Google's ms `Z`, Graph's 7-digit fraction, the CRM's offset) as a Unix time."""
    head, _, fraction = text.rstrip("Z").partition(".")
    zone = ""
    for sign in "+-":
        if sign in fraction:
            fraction, _, rest = fraction.partition(sign)
            zone = sign + rest
    moment = dt.datetime.fromisoformat(head + (zone or "+00:00"))
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _latency_figures(latencies: list[tuple[float, float]], expected: int) -> dict:
    """Percentiles of the latencies ((when the change was made, its latency) each), and when in the run the
    changes over the target were made: a tail at the start is a cold path, one spread over the run a queue."""
    values, start = [latency for _, latency in latencies], min((at for at, _ in latencies), default=0.0)
    over_target = Counter(int(at - start) for at, latency in latencies if latency >= TARGET_P99_S)
    return {"changes": expected, "missing": expected - len(latencies),
            "p50_s": round(percentile(values, 50), 3), "p99_s": round(percentile(values, 99), 3),
            "max_s": round(max(values, default=float("nan")), 3),
            "over_target_by_second_of_run": dict(sorted(over_target.items()))}


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _warm_up(bench: Bench) -> None:
    """A small two-way sync per provider: the worker has joined its groups and holds tokens and pools."""
    for provider in PROVIDERS:
        bench.crm_to_provider(provider, ["warm"], 5)


@contextlib.contextmanager
def running_stack(logs: Path, worker_env: dict[str, str] | None = None):
    """The whole stack as processes, each logging into `logs`; yields a Bench on it."""
    http_port, https_port = free_port(), free_port()
    tls_dir = Path(tempfile.mkdtemp(prefix="sandbox-tls-"))
    sandbox_url = f"http://127.0.0.1:{http_port}"
    with ExitStack() as stack:
        sandbox = stack.enter_context(service("sandbox", {
            "SANDBOX_HTTP_PORT": str(http_port), "SANDBOX_HTTPS_PORT": str(https_port), "SANDBOX_TLS_DIR": str(tls_dir)},
            ready_url=f"{sandbox_url}/_sandbox/counters", log_path=logs / "sandbox.log"))
        bootstrap, redis_url = stack.enter_context(broker_and_redis())
        settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, fernet_keys=DEV_FERNET_KEY)
        asyncio.run(ensure_topics(bootstrap, settings.topic_partitions))
        ingest_port, crm_port = free_port(), free_port()
        ingest_url, crm_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{crm_port}"
        where = SimpleNamespace(http_url=sandbox_url, https_url=f"https://127.0.0.1:{https_port}",
                                tls=SimpleNamespace(ca_cert=tls_dir / "ca.pem"))
        env = calendar_env(settings, where, ingest_url) | {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url, "CRMSYNC_LOG_LEVEL": "WARNING",
            "CRMSYNC_INGEST_PORT": str(ingest_port), "CRMSYNC_GOOGLE_QUOTA_PER_USER": str(GOOGLE_QUOTA_PER_MIN)}
        stack.enter_context(service("services.ingest", env, ready_url=f"{ingest_url}/readyz",
                                    log_path=logs / "ingest.log"))
        stack.enter_context(service("sandbox.crm", env | {"CRMSYNC_CRM_PORT": str(crm_port),
                                                          "CRMSYNC_CRM_INGEST_URL": ingest_url},
                                    ready_url=f"{crm_url}/healthz", log_path=logs / "crm.log"))
        for n in range(WORKERS):
            stack.enter_context(service("services.calendar_sync", env | (worker_env or {}),
                                        log_path=logs / f"calendar_sync-{n}.log"))
        bench = Bench(Sandbox(sandbox_url, settings), sandbox.pid, Crm(crm_url, redis_url),
                      Admin(ingest_url, settings), ingest_url, settings)
        _warm_up(bench)
        yield bench


def run() -> dict:
    logs = Path(tempfile.mkdtemp(prefix="bench-calendar-"))
    with running_stack(logs) as bench:
        figures = {provider: bench.provider_figures(provider) for provider in PROVIDERS}
    figures["settings"] = {"workers": WORKERS, "parts": sorted(PARTS), "load_average": os.getloadavg(),
                           "keyed_concurrency": os.environ.get("CRMSYNC_KEYED_CONCURRENCY", "default"), "google_quota_per_user_per_min": GOOGLE_QUOTA_PER_MIN, "logs": str(logs)}
    figures["targets"] = {"first_sync_ratio_to_raw_batched": TARGET_RATIO, "latency_p99_s": TARGET_P99_S}
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
