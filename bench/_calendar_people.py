"""The people of the calendar_sync benchmark: a CRM user, calendar users in Google and Outlook, an admin.

Each acts the way the e2e tests' people do (tests/fixtures/calendar_stack.py), in bulk: events go into the
CRM through its bulk API (source `api`: imported records are never synced), into calendars through the
providers' own batch endpoints, and configurations through ingest's admin API. Reads that only check or
time the sync go to Redis (the reference CRM's records, the workers' statuses), which costs the machine
less than asking the services while the clock runs.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import google_auth_httplib2
import httplib2
import httpx
import redis
from google.oauth2.credentials import Credentials
from googleapiclient.http import BatchHttpRequest

from bench.sandbox_calendar import _calendar, _event
from sandbox.crm.store import OrgKeys
from schemas import CrmModule
from services.common.secrets import SecretBox
from services.common.settings import Settings
from services.common.state import connect, key
from services.common.tokens import Grant, TokenStore
from tests.fixtures.calendar_stack import GOOGLE_APP, MICROSOFT_APP, TENANT

ZONE = ZoneInfo("Europe/Berlin")
CRM_BULK_MAX = 500
GOOGLE_BATCH = 50
GRAPH_BATCH = 20
INTEGRATION = {"google": "google_calendar", "microsoft": "microsoft_calendar"}


def slot(n: int) -> tuple[dt.datetime, dt.datetime]:
    """The n-th event's hour: all ahead (a first sync pushes future events first), 10 minutes apart, so
    5,000 of them fit well inside the 3-month window."""
    start = (dt.datetime.now(ZONE) + dt.timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    start += dt.timedelta(minutes=10 * n)
    return start, start + dt.timedelta(hours=1)


def crm_fields(title: str, n: int) -> dict:
    start, end = slot(n)
    return {"Event_Title": title, "Start_DateTime": start.isoformat(), "End_DateTime": end.isoformat(),
            "Time_Zone": "Europe/Berlin", "Venue": "Room 1", "Description": "Agenda: pipeline review",
            "Reminders": [{"minutes": 10, "method": "popup"}]}


class Sandbox:
    """Accounts of crmsync's OAuth apps, the call counters, and the grants the connect flow stores."""

    def __init__(self, url: str, settings: Settings):
        self.url = url
        self.settings = settings
        self.http = httpx.Client(base_url=url, timeout=60)

    def accounts(self, provider: str, org: str, users: list[str]) -> dict[str, dict]:
        """A connected account per CRM user: created in the sandbox, its refresh token stored encrypted."""
        app = GOOGLE_APP if provider == "google" else {**MICROSOFT_APP, "tenant_id": TENANT}
        accounts = {user: self.http.post("/_sandbox/accounts", json={
            "provider": provider, "email": f"{user}.{org}@bench.example", **app}).raise_for_status().json()
            for user in users}

        async def store() -> None:
            client = connect(self.settings.redis_url)
            tokens = TokenStore(client, SecretBox(self.settings.fernet_key_list))
            for user, account in accounts.items():
                tenant = TENANT if provider == "microsoft" else None
                await tokens.put(org, user, INTEGRATION[provider],
                                 Grant(provider, account["email"], account["refresh_token"], tenant_id=tenant))
            await client.aclose()

        asyncio.run(store())
        return accounts

    def counters(self) -> dict[str, int]:
        return self.http.get("/_sandbox/counters").raise_for_status().json()["calls"]

    def credentials(self, account: dict) -> Credentials:
        return Credentials(token=account["access_token"], refresh_token=account["refresh_token"],
                           token_uri=f"{self.url}/token", client_id=account["client_id"],
                           client_secret=account["client_secret"])

    # --- calendar users ---------------------------------------------------------------------------
    def seed_google(self, account: dict, titles: list[str]) -> list[str]:
        """Events put in the user's primary calendar in batches of 50, as another app would; their ids."""
        credentials = self.credentials(account)
        events = _calendar(self.url, credentials).events()
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=60))
        ids, failures = [], []
        for offset in range(0, len(titles), GOOGLE_BATCH):
            batch = BatchHttpRequest(callback=lambda _, answer, error: (failures if error else ids).append(
                error or answer["id"]), batch_uri=f"{self.url}/batch/calendar/v3")
            for n, title in enumerate(titles[offset:offset + GOOGLE_BATCH], start=offset):
                start, end = slot(n)
                batch.add(events.insert(calendarId="primary", sendUpdates="none", body={
                    **_event(), "summary": title, "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
                    "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"}}))
            batch.execute(http=http)
        if failures:
            raise RuntimeError(f"{len(failures)} Google seed inserts failed, first: {failures[0]}")
        return ids

    def seed_outlook(self, account: dict, titles: list[str]) -> list[str]:
        """Events created in the user's Outlook calendar, 20 to a $batch; their ids."""
        ids = []
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        for offset in range(0, len(titles), GRAPH_BATCH):
            requests = []
            for n, title in enumerate(titles[offset:offset + GRAPH_BATCH], start=offset):
                start, end = slot(n)
                requests.append({"id": str(n), "method": "POST", "url": f"/users/{account['id']}/events",
                                 "headers": {"Content-Type": "application/json"}, "body": {
                                     "subject": title, "body": {"contentType": "text", "content": "Agenda"},
                                     "start": {"dateTime": start.replace(tzinfo=None).isoformat(),
                                               "timeZone": "W. Europe Standard Time"},
                                     "end": {"dateTime": end.replace(tzinfo=None).isoformat(),
                                             "timeZone": "W. Europe Standard Time"},
                                     "location": {"displayName": "Room 1"}}})
            answers = self.http.post("/v1.0/$batch", json={"requests": requests}, headers=headers).json()["responses"]
            failed = [a for a in answers if a["status"] != 201]
            if failed:
                raise RuntimeError(f"{len(failed)} Outlook seed creates failed, first: {failed[0]}")
            ids += [a["body"]["id"] for a in sorted(answers, key=lambda a: int(a["id"]))]
        return ids

    def google_events(self, account: dict) -> list[dict]:
        items, page = [], None
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        while True:
            params = {"maxResults": 2500, "fields": "items(id,summary,updated),nextPageToken",
                      **({"pageToken": page} if page else {})}
            body = self.http.get("/calendar/v3/calendars/primary/events", params=params, headers=headers).json()
            items += body.get("items", [])
            if not (page := body.get("nextPageToken")):
                return items

    def outlook_events(self, account: dict) -> list[dict]:
        items = []
        url = f"/v1.0/users/{account['id']}/events?$top=999&$select=subject,lastModifiedDateTime"
        headers = {"Authorization": f"Bearer {account['access_token']}"}
        while url:
            body = self.http.get(url, headers=headers).raise_for_status().json()
            items += body.get("value", [])
            url = body.get("@odata.nextLink", "").removeprefix(self.url)
        return items


class Crm:
    """The reference CRM: events created over its HTTP API, records read from its Redis."""

    def __init__(self, url: str, redis_url: str):
        self.http = httpx.Client(base_url=url, timeout=60)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def create_events(self, org: str, owner: str, fields: list[dict]) -> list[str]:
        ids = []
        for offset in range(0, len(fields), CRM_BULK_MAX):
            answer = self.http.post(f"/v1/orgs/{org}/modules/Events/records/bulk", json={
                "source": "api", "records": [{"owner_id": owner, "fields": f} for f in fields[offset:offset + CRM_BULK_MAX]]})
            ids += [r["id"] for r in answer.raise_for_status().json()["records"]]
        return ids

    def event_count(self, org: str) -> int:
        return self.redis.zcard(OrgKeys(org).index(CrmModule.EVENTS))

    def events(self, org: str, record_ids: Iterable[str]) -> dict[str, dict]:
        """Record id -> the record as the CRM holds it (fields, modified_at), for those that exist."""
        ids = list(record_ids)
        keys = OrgKeys(org)
        raw = self.redis.mget([keys.record(CrmModule.EVENTS, i) for i in ids]) if ids else []
        return {i: json.loads(r) for i, r in zip(ids, raw) if r}

    def all_events(self, org: str) -> dict[str, dict]:
        return self.events(org, self.redis.zrange(OrgKeys(org).index(CrmModule.EVENTS), 0, -1))


class Admin:
    """Ingest's admin API, and the statuses the workers leave in Redis."""

    def __init__(self, ingest_url: str, settings: Settings):
        self.ingest_url = ingest_url
        self.token = settings.admin_token
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)

    def enable(self, org: str, users: list[str], integration: str) -> None:
        """Every user's configuration at once, as an admin enabling a team would (requests side by side)."""
        async def put_all() -> None:
            async with httpx.AsyncClient(base_url=self.ingest_url, timeout=60,
                                         headers={"Authorization": f"Bearer {self.token}"}) as http:
                answers = await asyncio.gather(*(http.put(
                    f"/v1/orgs/{org}/users/{user}/integrations/{integration}",
                    json={"enabled": True, "direction": "two_way"}) for user in users))
            for answer in answers:
                answer.raise_for_status()

        asyncio.run(put_all())

    def synced(self, org: str, users: list[str], integration: str) -> int:
        """How many of the users' first syncs are done (the worker marks the status ok after one)."""
        raw = self.redis.mget([key("status", org, user, integration) for user in users])
        return sum(1 for r in raw if r and json.loads(r)["state"] == "ok")

    def indexed(self, org: str, users: list[str]) -> int:
        """CRM events calendar_sync has indexed from crm.changes (what a first sync pushes)."""
        return sum(self.redis.hlen(key("calcrm", org, user)) for user in users)

