"""`/v1.0/subscriptions` on users' events, change notifications, lifecycle notifications.

Graph's rules (https://learn.microsoft.com/graph/api/subscription-post-subscriptions,
https://learn.microsoft.com/graph/api/resources/subscription, .../change-notifications-lifecycle-events):
- create validates notificationUrl (and lifecycleNotificationUrl) by the handshake before answering 201;
- expirationDateTime must be in the future and at most the resource's maximum ahead (Outlook: a setting,
  `SandboxConfig.graph_max_subscription_minutes`): 400 ExtensionError "Subscription expiration can only be
  N minutes in the future." otherwise (microsoftgraph/microsoft-graph-docs issue 2988);
- clientState is at most 128 characters; lifecycleNotificationUrl can be set only at creation;
- PATCH renews (same expiration checks), DELETE answers 204, `POST /subscriptions/{id}/reauthorize`;
- every change to a subscribed user's events is POSTed as `{"value": [changeNotification]}`;
- after a reauthorizationRequired challenge, notifications pause until `/reauthorize` or a PATCH renewal
  (https://learn.microsoft.com/graph/change-notifications-lifecycle-events: "eventually change
  notification delivery pauses"; the sandbox pauses at once so that an app that ignores it is caught).
Sandbox deviation: notificationUrl must be https except on loopback hosts, so tests can listen on plain
http; real Graph takes https only.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, HTTPException, Request, Response

from sandbox.errors import graph_error
from sandbox.microsoft.auth import graph_grant
from sandbox.microsoft.contact_store import ContactStore
from sandbox.microsoft.event_model import parse_local
from sandbox.microsoft.event_store import Change, EventStore
from sandbox.microsoft.graph_common import base_url
from sandbox.microsoft.graph_users import mailbox_owner
from sandbox.microsoft.notifications import Courier, DeliverySettings
from sandbox.state import Grant

CLIENT_STATE_MAX = 128
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "missed", "subscriptionRemoved")
_EVENTS_RESOURCE = re.compile(r"^/?(?:users/([^/]+)|(me))/(?:calendar/)?events$", re.IGNORECASE)
# Contacts of a mailbox, or of one of its folders (https://learn.microsoft.com/graph/api/resources/subscription,
# "Outlook personal contact": /users/{id}/contacts, /users/{id}/contactFolders/{id}/contacts).
_CONTACTS_RESOURCE = re.compile(r"^/?(?:users/([^/]+)|(me))/(?:contactFolders/([^/]+)/)?contacts$", re.IGNORECASE)


@dataclass
class Subscription:
    id: str
    resource: str
    user_id: str
    tenant_id: str | None
    application_id: str
    creator_id: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires_at: dt.datetime
    needs_reauthorization: bool = False
    kind: str = "Events"
    folder_id: str | None = None  # contacts of this folder only

    def active(self) -> bool:
        return self.expires_at > dt.datetime.now(dt.UTC)

    def expiration(self) -> str:
        return self.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")

    def resource_json(self, request: Request) -> dict:
        return {
            "@odata.context": f"{base_url(request)}/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": self.expiration(),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationQueryOptions": None,
            "notificationUrlAppId": None,
        }


@dataclass
class SubscriptionBook:
    by_id: dict[str, Subscription] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.by_id.clear()

    def watching(self, change: Change) -> list[Subscription]:
        with self.lock:
            return [
                s for s in self.by_id.values()
                if s.user_id == change.user_id and change.change_type in s.change_types and s.kind == change.kind
                and s.folder_id in (None, change.folder_id) and s.active() and not s.needs_reauthorization
            ]


def _invalid(message: str, code: str = "InvalidRequest"):
    return graph_error(400, code, message)


def _check_url(url, field_name: str) -> str:
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise _invalid(f"The {field_name} must be an https URL (the sandbox also accepts http on loopback hosts).")
    return url


def _check_expiration(value, max_minutes: int) -> dt.datetime:
    if not value:
        raise _invalid("expirationDateTime is a required property for subscription creation.", "ValidationError")
    moment = parse_local(str(value), "expirationDateTime")
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    if moment <= now:
        raise _invalid("Subscription expiration must be in the future.", "ExtensionError")
    if moment > now + dt.timedelta(minutes=max_minutes):
        raise _invalid(f"Subscription expiration can only be {max_minutes} minutes in the future.", "ExtensionError")
    return moment


def _not_found():
    return graph_error(404, "ResourceNotFound", "The object was not found.")


def lifecycle_payload(sub: Subscription, event: str) -> dict:
    return {"value": [{
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": sub.expiration(),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }]}


def change_payload(sub: Subscription, change: Change) -> dict:
    resource = f"Users/{change.user_id}/{change.kind}/{change.event_id}"
    return {"value": [{
        "id": uuid.uuid4().hex,
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": sub.expiration(),
        "changeType": change.change_type,
        "resource": resource,
        "resourceData": {
            "@odata.type": f"#Microsoft.Graph.{change.kind[:-1]}",
            "@odata.id": resource,
            "@odata.etag": f'W/"{change.change_key}"',
            "id": change.event_id,
        },
        "clientState": sub.client_state,
        "tenantId": sub.tenant_id,
    }]}


def router(sandbox, events: EventStore, courier: Courier, contacts: ContactStore) -> APIRouter:
    book = SubscriptionBook()
    sandbox.state.on_reset(book.reset)
    api = APIRouter(tags=["graph subscriptions"])

    def missed(sub: Subscription):
        """What Graph does once it gave up delivering a change: tell the lifecycle URL it was missed."""
        def tell() -> None:
            if sub.lifecycle_url and sub.active():
                courier.send("lifecycle", sub.id, sub.lifecycle_url, lifecycle_payload(sub, "missed"))
        return tell

    def on_change(change: Change) -> None:
        for sub in book.watching(change):
            courier.send("change", sub.id, sub.notification_url, change_payload(sub, change), on_drop=missed(sub))

    events.add_listener(on_change)
    contacts.add_listener(on_change)

    def visible(grant: Grant, sub: Subscription | None) -> bool:
        """Whether this caller's app (and, for a delegated token, its user) made the live subscription."""
        if sub is None or not sub.active():
            return False
        same_app = sub.application_id == grant.client_id and sub.tenant_id == grant.tenant_id
        return same_app and (grant.account_id is None or sub.creator_id == grant.account_id)

    def owned(request: Request, subscription_id: str) -> Subscription:
        sub = book.by_id.get(subscription_id)
        if not visible(graph_grant(sandbox, request), sub):
            raise _not_found()
        return sub

    @api.post("/v1.0/subscriptions", status_code=201)
    async def create(request: Request, body: Annotated[dict, Body()]):
        resource = str(body.get("resource", ""))
        match, kind, folder_id = _EVENTS_RESOURCE.match(resource), "Events", None
        if not match:
            match, kind = _CONTACTS_RESOURCE.match(resource), "Contacts"
        if not match:
            raise _invalid(f"Resource '{resource}' is not supported by the sandbox (users' events and contacts).",
                           "ExtensionError")
        grant, account = mailbox_owner(sandbox, request, match.group(1) or "me")
        if kind == "Contacts" and match.group(3):
            folder_id = contacts.folder_id(account.id, match.group(3))
        change_types = tuple(t.strip() for t in str(body.get("changeType", "")).split(",") if t.strip())
        if not change_types or any(t not in CHANGE_TYPES for t in change_types):
            raise _invalid(f"Invalid changeType '{body.get('changeType')}': use created, updated, deleted.")
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > CLIENT_STATE_MAX:
            raise _invalid(f"clientState must be at most {CLIENT_STATE_MAX} characters.")
        expires_at = _check_expiration(body.get("expirationDateTime"), sandbox.config.graph_max_subscription_minutes)
        notification_url = _check_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            _check_url(lifecycle_url, "lifecycleNotificationUrl")
        sub_id = str(uuid.uuid4())
        await courier.validate_endpoint(notification_url, sub_id)
        if lifecycle_url:
            await courier.validate_endpoint(lifecycle_url, sub_id)
        sub = Subscription(
            sub_id, body["resource"], account.id, account.tenant_id, grant.client_id,
            grant.account_id or grant.client_id, change_types, notification_url, lifecycle_url,
            client_state, expires_at, kind=kind, folder_id=folder_id,
        )
        with book.lock:
            book.by_id[sub.id] = sub
        return sub.resource_json(request)

    @api.get("/v1.0/subscriptions")
    async def list_subscriptions(request: Request) -> dict:
        grant = graph_grant(sandbox, request)
        with book.lock:
            subs = list(book.by_id.values())
        value = [s.resource_json(request) for s in subs if visible(grant, s)]
        return {"@odata.context": f"{base_url(request)}/v1.0/$metadata#subscriptions", "value": value}

    @api.get("/v1.0/subscriptions/{subscription_id}")
    async def get_subscription(request: Request, subscription_id: str) -> dict:
        return owned(request, subscription_id).resource_json(request)

    @api.patch("/v1.0/subscriptions/{subscription_id}")
    async def renew(request: Request, subscription_id: str, body: Annotated[dict, Body()]) -> dict:
        sub = owned(request, subscription_id)
        if "lifecycleNotificationUrl" in body and body["lifecycleNotificationUrl"] != sub.lifecycle_url:
            raise _invalid("lifecycleNotificationUrl can only be set when the subscription is created.")
        expires_at = _check_expiration(body.get("expirationDateTime"), sandbox.config.graph_max_subscription_minutes)
        new_url = body.get("notificationUrl")
        if new_url and new_url != sub.notification_url:
            await courier.validate_endpoint(_check_url(new_url, "notificationUrl"), sub.id)
            sub.notification_url = new_url
        sub.expires_at, sub.needs_reauthorization = expires_at, False  # renewing also reauthorizes
        return sub.resource_json(request)

    @api.delete("/v1.0/subscriptions/{subscription_id}", status_code=204)
    async def delete(request: Request, subscription_id: str):
        sub = owned(request, subscription_id)
        with book.lock:
            book.by_id.pop(sub.id, None)
        return Response(status_code=204)

    @api.post("/v1.0/subscriptions/{subscription_id}/reauthorize", status_code=204)
    async def reauthorize(request: Request, subscription_id: str):
        """204 No Content (https://learn.microsoft.com/graph/api/subscription-reauthorize)."""
        owned(request, subscription_id).needs_reauthorization = False
        return Response(status_code=204)

    # --- control --------------------------------------------------------------------------------
    def control_subscription(subscription_id: str) -> Subscription:
        sub = book.by_id.get(subscription_id)
        if sub is None:
            raise HTTPException(404, f"no Graph subscription {subscription_id}")
        return sub

    @api.post("/_sandbox/microsoft/subscriptions/{subscription_id}/lifecycle", status_code=202, tags=["sandbox control"])
    async def send_lifecycle(subscription_id: str, body: Annotated[dict, Body()]) -> dict:
        """Post a lifecycle notification as Graph would; subscriptionRemoved also removes the subscription."""
        sub = control_subscription(subscription_id)
        event = body.get("event")
        if event not in LIFECYCLE_EVENTS:
            raise HTTPException(400, f"event must be one of {LIFECYCLE_EVENTS}")
        if not sub.lifecycle_url:
            raise HTTPException(409, "the subscription has no lifecycleNotificationUrl")
        if event == "reauthorizationRequired":
            sub.needs_reauthorization = True
        if event == "subscriptionRemoved":
            sub.expires_at = dt.datetime.now(dt.UTC)
        courier.send("lifecycle", sub.id, sub.lifecycle_url, lifecycle_payload(sub, event))
        return {"queued": event}

    @api.post("/_sandbox/microsoft/subscriptions/{subscription_id}/expire", tags=["sandbox control"])
    async def expire(subscription_id: str) -> dict:
        """Expire now: no more notifications, the API answers 404; subscriptionRemoved goes to the lifecycle URL."""
        sub = control_subscription(subscription_id)
        sub.expires_at = dt.datetime.now(dt.UTC)
        if sub.lifecycle_url:
            courier.send("lifecycle", sub.id, sub.lifecycle_url, lifecycle_payload(sub, "subscriptionRemoved"))
        return {"expired": sub.id, "expirationDateTime": sub.expiration()}

    @api.get("/_sandbox/microsoft/subscriptions", tags=["sandbox control"])
    async def all_subscriptions() -> list[dict]:
        with book.lock:
            return [
                {"id": s.id, "resource": s.resource, "active": s.active(), "needsReauthorization": s.needs_reauthorization,
                 "expirationDateTime": s.expiration(), "notificationUrl": s.notification_url}
                for s in book.by_id.values()
            ]

    @api.get("/_sandbox/microsoft/deliveries", tags=["sandbox control"])
    async def deliveries() -> list[dict]:
        return courier.deliveries()

    @api.patch("/_sandbox/microsoft/settings", tags=["sandbox control"])
    async def settings(body: Annotated[dict, Body()]) -> dict:
        """Shorten the handshake or delivery timeouts for a test; /_sandbox/reset restores them."""
        unknown = set(body) - set(DeliverySettings.__dataclass_fields__)
        if unknown:
            raise HTTPException(400, f"unknown settings {sorted(unknown)}")
        for name, value in body.items():
            setattr(courier.settings, name, float(value))
        return courier.settings_dict()

    return api
