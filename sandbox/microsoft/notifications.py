"""Outgoing calls of Graph subscriptions: the validation handshake and notification deliveries.

- Handshake (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation):
  POST `{url}?validationToken=<token>`; the endpoint must answer within 10 s, status 200, Content-Type
  text/plain, body exactly the URL-decoded token. Graph's refusals seen in the field: 400 InvalidRequest
  "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation
  request." / "... Response must exactly match validationToken query parameter." / "Subscription
  validation request timed out." (microsoftgraph/nodejs-webhooks-sample issue 350,
  microsoftgraph/java-spring-webhooks-sample issue 82).
- Deliveries run on worker threads, never inside the API call that caused them; each outcome is kept for
  `GET /_sandbox/microsoft/deliveries`. Graph expects an answer within 3 s and retries for hours; the
  sandbox records a slow or failed delivery and does not retry.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

import httpx

from sandbox.errors import graph_error


@dataclass
class DeliverySettings:
    """Figures a test may shorten through `PATCH /_sandbox/microsoft/settings`; reset restores them."""

    validation_timeout_s: float = 10.0
    notification_timeout_s: float = 3.0
    lose_changes: float = 0.0  # share of change notifications dropped before delivery


def _validation_failed(reason: str):
    return graph_error(400, "InvalidRequest", reason)


class Courier:
    def __init__(self, workers: int = 8) -> None:
        self.settings = DeliverySettings()
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self._generation = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-notify")
        self._client = httpx.Client()

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
            async with httpx.AsyncClient() as client:
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

    def send(self, kind: str, subscription_id: str, url: str, payload: dict) -> None:
        """Queue one POST of `payload`; the caller goes on at once."""
        if kind == "change" and random.random() < self.settings.lose_changes:
            self._record(self._generation, kind=kind, subscription_id=subscription_id, url=url, status=None,
                         error="lost", elapsed_ms=0.0, slow=False, payload=payload)
            return
        self._pool.submit(self._deliver, self._generation, kind, subscription_id, url, payload)

    def _deliver(self, generation: int, kind: str, subscription_id: str, url: str, payload: dict) -> None:
        started = time.monotonic()
        outcome = {"kind": kind, "subscription_id": subscription_id, "url": url, "status": None, "error": None}
        try:
            answer = self._client.post(url, json=payload, timeout=self.settings.notification_timeout_s)
            outcome["status"] = answer.status_code
        except httpx.HTTPError as exc:
            outcome["error"] = repr(exc)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        # Graph counts an endpoint slower than 2,900 ms as slow and throttles it.
        self._record(generation, **outcome, elapsed_ms=elapsed_ms, slow=elapsed_ms > 2900, payload=payload)

    def deliveries(self) -> list[dict]:
        with self.lock:
            return list(self.records)

    def settings_dict(self) -> dict:
        return asdict(self.settings)
