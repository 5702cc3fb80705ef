"""Outgoing calls of Graph subscriptions: the validation handshake and notification deliveries.

- Handshake (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation):
  POST `{url}?validationToken=<token>`; the endpoint must answer within 10 s, status 200, Content-Type
  text/plain, body exactly the URL-decoded token. Graph's refusals seen in the field: 400 InvalidRequest
  "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation
  request." / "... Response must exactly match validationToken query parameter." / "Subscription
  validation request timed out." (microsoftgraph/nodejs-webhooks-sample issue 350,
  microsoftgraph/java-spring-webhooks-sample issue 82).
- Deliveries run on worker threads, never inside the API call that caused them; each attempt is kept for
  `GET /_sandbox/microsoft/deliveries`. "Once the ... service receives a 2xx HTTP response from your endpoint
  within 3 seconds, the notification is considered delivered. If the service receives a non-2xx HTTP
  response within that 3-second window, or if the request times out ..., it continues to retry ... for up
  to 4 hours" at "exponential backoff intervals"
  (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#http-codes-and-retry-logic). The
  sandbox retries after `retry_base_delay_s`, doubling, until the next retry would fall after
  `retry_window_s` from the first attempt; then the notification is dropped and, for a change notification
  of a subscription with a lifecycle URL, a `missed` lifecycle notification follows, which is what Graph
  sends when it could not deliver changes. Both figures are settings, so tests run the schedule in seconds.
  Deliveries, retries and drops are counted in `/_sandbox/counters` ("graph change notifications retried").
- Lost notifications: `lose_changes` (a share, 0 to 1) drops change notifications before they leave, as
  when Graph gives up on a delivery; each is recorded with the error "lost". Graph then tells the app
  with a `missed` lifecycle notification, which a test posts through the control API.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

import httpx
import orjson
import urllib3

from sandbox.errors import graph_error


@dataclass
class DeliverySettings:
    """Figures a test may shorten through `PATCH /_sandbox/microsoft/settings`; reset restores them."""

    validation_timeout_s: float = 10.0
    notification_timeout_s: float = 3.0
    lose_changes: float = 0.0  # share of change notifications dropped before delivery
    retry_base_delay_s: float = 1.0  # the first retry's delay; each next one doubles
    retry_window_s: float = 4 * 3600.0  # Graph retries "for up to 4 hours", then drops the notification


def count_call(book, name: str) -> None:
    """One more under `name` in the sandbox's counters (`/_sandbox/counters`, "calls")."""
    with book.lock:
        book.calls[name] += 1


def _validation_failed(reason: str):
    return graph_error(400, "InvalidRequest", reason)


@dataclass
class _Delivery:
    kind: str
    subscription_id: str
    url: str
    payload: dict
    on_drop: Callable[[], None] | None
    first_attempt: float


class Courier:
    def __init__(self, workers: int = 8, count: Callable[[str], None] = lambda name: None) -> None:
        """`count(name)` adds one to a sandbox counter: each delivery, retry and drop is counted."""
        self.count = count
        self.settings = DeliverySettings()
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self._generation = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-notify")
        # urllib3 for the deliveries: at 100 changes a second httpx's pool cost a tenth of the sandbox's CPU,
        # which a bench on the same cores takes from the services it measures.
        self._http = urllib3.PoolManager(maxsize=workers, retries=False)
        # A client per handshake (each runs on whichever loop serves the request), one TLS context for all:
        # building it loads the trust store, ~0.1 s of CPU, and 50 first syncs each open a subscription.
        self._tls = httpx.create_ssl_context()

    def reset(self) -> None:
        with self.lock:
            self.settings = DeliverySettings()
            self.records.clear()
            self._generation += 1

    def _record(self, generation: int, **outcome) -> None:
        with self.lock:
            if generation == self._generation:  # a delivery started before a reset is forgotten
                self.records.append(outcome)

    async def validate_endpoint(self, url: str, subscription_id: str | None = None) -> None:
        """The handshake; returns when the endpoint echoed the token in time, else raises Graph's 400."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = f"{url}{'&' if '?' in url else '?'}{urlencode({'validationToken': token})}"
        timeout = self.settings.validation_timeout_s
        generation, started = self._generation, time.monotonic()
        outcome = {"kind": "validation", "subscription_id": subscription_id, "url": url, "status": None, "error": None}
        try:
            async with httpx.AsyncClient(verify=self._tls) as client:
                answer = await asyncio.wait_for(
                    client.post(target, content=b"", headers={"Content-Type": "text/plain; charset=utf-8"}), timeout
                )
            outcome["status"] = answer.status_code
        except (TimeoutError, httpx.TimeoutException):
            outcome["error"] = "timeout"
            raise _validation_failed("Subscription validation request timed out.") from None
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)
            raise _validation_failed(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
            ) from None
        finally:
            self._record(generation, **outcome, elapsed_ms=round((time.monotonic() - started) * 1000, 1))
        if answer.status_code != 200:
            raise _validation_failed(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
            )
        plain = answer.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain"
        if not plain or answer.text != token:
            raise _validation_failed(
                "Subscription validation request failed. Response must exactly match validationToken query parameter."
            )

    def send(self, kind: str, subscription_id: str, url: str, payload: dict,
             on_drop: Callable[[], None] | None = None) -> None:
        """Queue the POST of `payload` (and its retries); the caller goes on at once. `on_drop` runs if
        every attempt fails."""
        if kind == "change" and random.random() < self.settings.lose_changes:
            self._record(self._generation, kind=kind, subscription_id=subscription_id, url=url, status=None,
                         error="lost", elapsed_ms=0.0, slow=False, payload=payload)
            return
        delivery = _Delivery(kind, subscription_id, url, payload, on_drop, time.monotonic())
        self._pool.submit(self._attempt, self._generation, delivery, 1)

    def _attempt(self, generation: int, delivery: _Delivery, attempt: int) -> None:
        if generation != self._generation:  # reset since: forgotten
            return
        started = time.monotonic()
        outcome = {"kind": delivery.kind, "subscription_id": delivery.subscription_id, "url": delivery.url,
                   "status": None, "error": None, "attempt": attempt}
        try:
            answer = self._http.request("POST", delivery.url, body=orjson.dumps(delivery.payload),
                                        headers={"Content-Type": "application/json"},
                                        timeout=urllib3.Timeout(total=self.settings.notification_timeout_s))
            outcome["status"] = answer.status
        except urllib3.exceptions.HTTPError as exc:
            outcome["error"] = repr(exc)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        delay = self.settings.retry_base_delay_s * 2 ** (attempt - 1)
        if outcome["status"] is not None and 200 <= outcome["status"] < 300:
            result = "delivered"
        elif time.monotonic() - delivery.first_attempt + delay > self.settings.retry_window_s:
            result = "dropped"
        else:
            result = "retried"
        # Graph counts an endpoint slower than 2,900 ms as slow and throttles it.
        self._record(generation, **outcome, outcome=result, elapsed_ms=elapsed_ms, slow=elapsed_ms > 2900,
                     payload=delivery.payload)
        self.count(f"graph {delivery.kind} notifications {result}")
        if result == "retried":
            timer = threading.Timer(delay, self._pool.submit, args=(self._attempt, generation, delivery, attempt + 1))
            timer.daemon = True
            timer.start()
        elif result == "dropped" and delivery.on_drop is not None:
            delivery.on_drop()

    def deliveries(self) -> list[dict]:
        with self.lock:
            return list(self.records)

    def settings_dict(self) -> dict:
        return asdict(self.settings)
