"""Microsoft 365 calendar <-> CRM events, end to end: the reference CRM, ingest, the worker, the Graph sandbox.

The tests taking `stack` run twice: as they are, and with the sandbox answering 20% of Graph calls with
429s and 5xx (the worker retries; so does Outlook's own client, OutlookUser; nothing is dropped or
duplicated). Outlook events are dated within the window Graph tracks changes over (the calendar view of
[now - 90 days, now + graph_calendar_horizon_days]).
"""
import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from schemas import CrmCommand
from tests.e2e import test_calendar_google as google
from tests.fixtures.net import wait_for
from tests.fixtures.topics import read_topic
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration
stack = google.stack  # the fixture: the stack as it is, then with 20% of provider calls throttled or failing
crm_record = google.crm_record

INTEGRATION = "microsoft_calendar"
BERLIN = ZoneInfo("Europe/Berlin")
TODAY = dt.date.today()


def crm_time(days: int, hour: int) -> str:
    """A CRM date-time `days` from today at `hour` o'clock in Berlin, with its offset."""
    return dt.datetime.combine(TODAY + dt.timedelta(days=days), dt.time(hour), BERLIN).isoformat()


def outlook_time(days: int, hour: int) -> dict:
    moment = dt.datetime.combine(TODAY + dt.timedelta(days=days), dt.time(hour))
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


EVENT = {"Event_Title": "Pipeline review", "Start_DateTime": crm_time(14, 10), "End_DateTime": crm_time(14, 11),
         "Time_Zone": "Europe/Berlin", "Venue": "Room 1",
         "Reminders": [{"minutes": 10, "method": "popup"}, {"minutes": 60, "method": "popup"}]}


def outlook_event(subject: str, days: int = 20, **extra) -> dict:
    return {"subject": subject, "start": outlook_time(days, 9), "end": outlook_time(days, 10), **extra}


def connected(stack, user: str = "ann", **config):
    org = unique_org()
    person = stack.connect_microsoft(org, user, f"{user}.{org}@example.com")
    stack.configure(org, user, INTEGRATION, **({"direction": "two_way"} | config))
    stack.wait_synced(org, user, INTEGRATION)
    return org, person


def titles(stack, org: str) -> list[str]:
    return sorted(r["fields"]["Event_Title"] for r in stack.crm.records(org))


def subjects(person) -> list[str]:
    return sorted(e["subject"] for e in person.events())


def one_outlook_event(stack, person) -> dict:
    def only() -> dict | None:
        items = person.events()
        return items[0] if len(items) == 1 else None

    return wait_for(only, 45, what=f"one event in Outlook; worker log:\n{stack.worker_log()}")


def one_event_each_way(stack, org: str, person) -> None:
    """A CRM event that went to Outlook and an Outlook event that came to the CRM."""
    stack.crm.create_event(org, "ann", **EVENT)
    person.create(outlook_event("From Outlook"))
    wait_for(lambda: len(person.events()) == 2 and len(stack.crm.records(org)) == 2, 45,
             what=f"both events on both sides; {stack.worker_log()}")


def subscriptions(stack, person) -> list[dict]:
    """The live Graph subscriptions on the person's events."""
    every = httpx.get(f"{stack.sandbox.http_url}/_sandbox/microsoft/subscriptions").json()
    return [s for s in every if s["active"] and s["resource"].startswith(f"users/{person.account['email']}/")]


def live_subscription(stack, person, other_than: str | None = None) -> dict | None:
    found = [s for s in subscriptions(stack, person) if s["id"] != other_than and not s["needsReauthorization"]]
    return found[0] if len(found) == 1 else None


def control(stack, path: str, **body) -> httpx.Response:
    answer = httpx.post(f"{stack.sandbox.http_url}/_sandbox/microsoft{path}", json=body or None)
    answer.raise_for_status()
    return answer


def graph_event_writes(stack) -> int:
    """POSTs and PATCHes of events the sandbox has answered so far (parts of $batch calls included)."""
    return sum(n for route, n in stack.calls().items()
               if route.split(" ")[0] in ("POST", "PATCH") and "/events" in route)


def delta_rounds(stack) -> int:
    return stack.calls().get("GET /v1.0/users/{user_id}/calendarView/delta", 0)


# --- both ways ----------------------------------------------------------------------------------


def test_crm_event_goes_to_outlook_at_once_and_outlook_edits_come_back(stack):
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_outlook_event(stack, ann)
    assert event["subject"] == "Pipeline review" and event["location"]["displayName"] == "Room 1"
    assert event["isReminderOn"] and event["reminderMinutesBeforeStart"] == 10, "Graph holds one: the closest"
    start = dt.datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(tzinfo=dt.UTC)
    assert start == dt.datetime.fromisoformat(EVENT["Start_DateTime"]) and event["isOrganizer"]
    assert event["transactionId"], "creates are idempotent"

    ann.patch(event["id"], {"location": {"displayName": "Room 2"}})
    wait_for(lambda: crm_record(stack, org, record["id"])["fields"]["Venue"] == "Room 2", 45,
             what=f"the Outlook edit in the CRM; {stack.worker_log()}")
    assert len(stack.crm.records(org)) == 1 and len(ann.events()) == 1, "no duplicate on either side"


def test_events_the_user_organises_arrive_in_the_crm_invitations_do_not(stack):
    org, ann = connected(stack)
    bob = stack.connect_microsoft(org, "bob", f"bob.{org}@example.com")  # a colleague; his sync is off
    bob.create(outlook_event("Bob's meeting", attendees=[
        {"emailAddress": {"address": ann.account["email"]}, "type": "required"}]))
    invitation = wait_for(lambda: [e for e in ann.events() if not e["isOrganizer"]], 30,
                          what="Bob's invitation in Ann's calendar")
    assert invitation[0]["subject"] == "Bob's meeting"
    ann.create(outlook_event("Ann's own", location={"displayName": "Her office"}))  # after the invitation

    [record] = wait_for(lambda: stack.crm.records(org), 45, what=f"Ann's event in the CRM; {stack.worker_log()}")
    assert record["fields"]["Event_Title"] == "Ann's own" and record["fields"]["Venue"] == "Her office"
    assert record["owner_id"] == "ann"
    assert titles(stack, org) == ["Ann's own"], "only My Events: the invitation stays out"


def test_deletes_go_both_ways(stack):
    org, ann = connected(stack)
    first = stack.crm.create_event(org, "ann", **EVENT)
    one_outlook_event(stack, ann)
    stack.crm.delete(org, "Events", first["id"])
    wait_for(lambda: ann.events() == [], 45, what=f"the CRM delete in Outlook; {stack.worker_log()}")

    ann.create(outlook_event("From Outlook"))
    wait_for(lambda: titles(stack, org) == ["From Outlook"], 45, what="the Outlook event in the CRM")
    [event] = ann.events()
    ann.delete(event["id"])
    wait_for(lambda: stack.crm.records(org) == [], 45, what=f"the Outlook delete in the CRM; {stack.worker_log()}")


def test_imported_and_migrated_events_are_not_synced_but_bulk_updated_ones_are(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    imported = stack.crm.create_event(org, "ann", source="import", **(EVENT | {"Event_Title": "Imported"}))
    stack.crm.create_event(org, "ann", source="migration", **(EVENT | {"Event_Title": "Migrated"}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Typed in"}))
    assert one_outlook_event(stack, ann)["subject"] == "Typed in"

    r = stack.crm.http.post(f"/v1/orgs/{org}/modules/Events/bulk-update",
                            json={"record_ids": [imported["id"]], "fields": {"Venue": "Hall"}})
    assert r.status_code == 200, r.text
    wait_for(lambda: subjects(ann) == ["Imported", "Typed in"], 45,
             what=f"the bulk-updated event in Outlook; {stack.worker_log()}")
    assert "Migrated" not in subjects(ann)


# --- first sync, disabling, enabling again ------------------------------------------------------


def test_first_sync_takes_future_events_first_then_recently_closed_up_to_the_cap(stack):
    org = unique_org()
    ann = stack.connect_microsoft(org, "ann", f"ann.{org}@example.com")
    stack.configure(org, "ann", INTEGRATION, enabled=False)
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Closed", "Start_DateTime": crm_time(-2, 10),
                                                   "End_DateTime": crm_time(-2, 11)}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Later", "Start_DateTime": crm_time(30, 10),
                                                   "End_DateTime": crm_time(30, 11)}))
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Soon"}))

    def all_indexed() -> bool:  # the worker knows the CRM's events before the first sync starts
        answer = stack.admin("POST", f"/v1/orgs/{org}/users/ann/integrations/{INTEGRATION}/preview")
        return answer.status_code == 200 and answer.json()["create_in_provider"] == 3

    wait_for(all_indexed, 60, what=f"the three CRM events indexed; {stack.worker_log()}")
    stack.configure(org, "ann", INTEGRATION, direction="two_way", caps={"initial_max_items": 2})
    stack.wait_synced(org, "ann", INTEGRATION)
    assert subjects(ann) == ["Later", "Soon"], "the cap keeps the two future events, not the closed one"


def test_disabling_deletes_the_synced_events_in_outlook_and_keeps_them_in_the_crm(stack):
    org, ann = connected(stack)
    one_event_each_way(stack, org, ann)
    [subscription] = subscriptions(stack, ann)

    stack.configure(org, "ann", INTEGRATION, enabled=False)
    wait_for(lambda: subjects(ann) == ["From Outlook"], 45,
             what=f"the synced event gone from Outlook, the user's own kept; {stack.worker_log()}")
    assert subscriptions(stack, ann) == [], "the subscription is deleted"
    deliveries = httpx.get(f"{stack.sandbox.http_url}/_sandbox/microsoft/deliveries").json()
    assert not [d for d in deliveries if d["subscription_id"] == subscription["id"]
                and d.get("payload", {}).get("value", [{}])[0].get("changeType") == "deleted"], \
        "the subscription was closed before the deletes: none of them can come back as a CRM delete"
    assert titles(stack, org) == ["From Outlook", "Pipeline review"], "the CRM keeps both"


def test_reenabling_after_deleting_the_configuration_duplicates_nothing(stack):
    org, ann = connected(stack)
    one_event_each_way(stack, org, ann)
    [first] = subscriptions(stack, ann)
    stack.remove(org, "ann", INTEGRATION)
    wait_for(lambda: subjects(ann) == ["From Outlook"] and not subscriptions(stack, ann), 45,
             what=f"disabled: the synced event gone from Outlook; {stack.worker_log()}")

    stack.configure(org, "ann", INTEGRATION, direction="two_way")
    # The subscription is opened after the first sync: once it is there, the resync is done.
    wait_for(lambda: live_subscription(stack, ann, other_than=first["id"]), 60,
             what=f"the resync done and a new subscription; {stack.worker_log()}")
    assert subjects(ann) == ["From Outlook", "Pipeline review"]
    assert titles(stack, org) == ["From Outlook", "Pipeline review"]
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "After"}))  # a sentinel behind the resync
    wait_for(lambda: subjects(ann) == ["After", "From Outlook", "Pipeline review"], 45,
             what=f"the sentinel in Outlook, nothing twice; {stack.worker_log()}")
    assert titles(stack, org) == ["After", "From Outlook", "Pipeline review"]


def test_an_invalidated_delta_token_means_a_full_resync_without_duplicates(stack):
    org, ann = connected(stack)
    one_event_each_way(stack, org, ann)
    control(stack, f"/users/{ann.account['id']}/invalidate-delta-tokens")
    ann.create(outlook_event("After the 410"))
    wait_for(lambda: len(stack.crm.records(org)) == 3, 45, what=f"the new event after a resync; {stack.worker_log()}")
    assert titles(stack, org) == ["After the 410", "From Outlook", "Pipeline review"]
    assert subjects(ann) == ["After the 410", "From Outlook", "Pipeline review"]
    stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "Sentinel"}))  # behind the resync's writes
    wait_for(lambda: len(ann.events()) == 4, 45, what="the sentinel in Outlook")
    assert len(stack.crm.records(org)) == 4 and len(ann.events()) == 4


def test_a_lost_mapping_store_is_rebuilt_from_our_extended_properties_without_duplicates(stack):
    org, ann = connected(stack)
    one_event_each_way(stack, org, ann)
    wait_for(lambda: len(mapping_keys(stack, org, "crm:*")) == 2, 30, what="both mappings stored")
    forget_mappings(stack, org)
    control(stack, f"/users/{ann.account['id']}/invalidate-delta-tokens")  # a full resync comes next
    ann.create(outlook_event("After the loss"))
    wait_for(lambda: len(stack.crm.records(org)) == 3, 45, what=f"the new event after a resync; {stack.worker_log()}")
    stack.crm.update(org, "Events", next(r["id"] for r in stack.crm.records(org)
                                         if r["fields"]["Event_Title"] == "Pipeline review"), Venue="Relinked")
    wait_for(lambda: any(e["location"]["displayName"] == "Relinked" for e in ann.events()), 45,
             what=f"the CRM event's update on its one Outlook copy; {stack.worker_log()}")
    assert titles(stack, org) == ["After the loss", "From Outlook", "Pipeline review"]
    assert subjects(ann) == ["After the loss", "From Outlook", "Pipeline review"]


def mapping_keys(stack, org: str, what: str = "*") -> list:
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        return list(client.scan_iter(match=f"crmsync:calmap:{org}:ann:{INTEGRATION}:{what}"))
    finally:
        client.close()


def forget_mappings(stack, org: str) -> None:
    """Delete the user's CRM id <-> Outlook id mappings, as a lost Redis would."""
    client = redis.Redis.from_url(stack.settings.redis_url)
    try:
        client.delete(*mapping_keys(stack, org))
    finally:
        client.close()


# --- lifecycle notifications --------------------------------------------------------------------


def test_reauthorization_required_renews_the_subscription_and_notifications_flow_again(stack):
    org, ann = connected(stack)
    before = wait_for(lambda: live_subscription(stack, ann), 30, what="the subscription")
    control(stack, f"/subscriptions/{before['id']}/lifecycle", event="reauthorizationRequired")
    renewed = wait_for(lambda: live_subscription(stack, ann), 45,
                       what=f"the subscription reauthorized; {stack.worker_log()}")
    assert renewed["id"] == before["id"] and renewed["expirationDateTime"] > before["expirationDateTime"]
    ann.create(outlook_event("After the renewal"))
    wait_for(lambda: titles(stack, org) == ["After the renewal"], 45,
             what=f"a change notified after the renewal; {stack.worker_log()}")


@pytest.mark.parametrize("how", ["subscriptionRemoved", "expire"])
def test_a_removed_subscription_is_created_again_and_changes_still_arrive(stack, how):
    org, ann = connected(stack)
    before = wait_for(lambda: live_subscription(stack, ann), 30, what="the subscription")
    if how == "expire":
        control(stack, f"/subscriptions/{before['id']}/expire")
    else:
        control(stack, f"/subscriptions/{before['id']}/lifecycle", event="subscriptionRemoved")
    wait_for(lambda: live_subscription(stack, ann, other_than=before["id"]), 45,
             what=f"a new subscription; {stack.worker_log()}")
    ann.create(outlook_event("After the removal"))
    wait_for(lambda: titles(stack, org) == ["After the removal"], 45,
             what=f"a change notified on the new subscription; {stack.worker_log()}")


def test_missed_notifications_are_caught_up_by_a_pull(stack):
    org, ann = connected(stack)
    subscription = wait_for(lambda: live_subscription(stack, ann), 30, what="the subscription")
    settings = f"{stack.sandbox.http_url}/_sandbox/microsoft/settings"

    def lost() -> bool:
        deliveries = httpx.get(f"{stack.sandbox.http_url}/_sandbox/microsoft/deliveries").json()
        return any(d["subscription_id"] == subscription["id"] and d["error"] == "lost" for d in deliveries)

    httpx.patch(settings, json={"lose_changes": 1}).raise_for_status()
    try:
        ann.create(outlook_event("Never notified"))
        wait_for(lost, 10, what="the change notification lost")
    finally:
        httpx.patch(settings, json={"lose_changes": 0}).raise_for_status()
    control(stack, f"/subscriptions/{subscription['id']}/lifecycle", event="missed")
    wait_for(lambda: titles(stack, org) == ["Never notified"], 45,
             what=f"the missed change pulled; {stack.worker_log()}")


# --- no loops, merges -----------------------------------------------------------------------------


def test_our_own_writes_coming_back_are_dropped(calendar_stack, kafka_bootstrap):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_outlook_event(stack, ann)
    writes, rounds = graph_event_writes(stack), delta_rounds(stack)
    stack.crm.update(org, "Events", record["id"], Event_Title="Second")
    wait_for(lambda: ann.events()[0]["subject"] == "Second", 45, what="the update in Outlook")
    ann.patch(event["id"], {"body": {"contentType": "text", "content": "sentinel"}})
    wait_for(lambda: crm_record(stack, org, record["id"])["fields"]["Description"] == "sentinel", 45,
             what="the sentinel in the CRM")
    # The notifications of our own writes name the version we wrote: no delta round of their own. The
    # sentinel's round brings them along, with the sentinel.
    assert delta_rounds(stack) - rounds == 1, stack.calls()
    # Notifications of one user come in order: the echoes of the create and of "Second" were pulled before
    # the sentinel was; each was recognised as ours and dropped, not written back to the CRM.
    commands = [c for c in map(CrmCommand.from_bytes, (r.value for r in read_topic(kafka_bootstrap, "crm.commands")))
                if c.org_id == org]
    assert [c.action.fields.get("Description") for c in commands] == ["sentinel"], commands
    # The same record again: its CRM change comes after the sentinel's writeback came back to the worker.
    stack.crm.update(org, "Events", record["id"], Venue="Fence")
    wait_for(lambda: ann.events()[0]["location"]["displayName"] == "Fence", 45, what="the fence in Outlook")
    # The worker's two updates and the user's one edit; the echoes of each made no write at all.
    assert graph_event_writes(stack) - writes == 3, f"ping-pong: {stack.calls()}"
    fields = crm_record(stack, org, record["id"])["fields"]
    assert (fields["Event_Title"], fields["Description"], fields["Venue"]) == ("Second", "sentinel", "Fence")
    assert len(ann.events()) == 1 and len(stack.crm.records(org)) == 1


def test_edits_to_different_fields_on_both_sides_are_all_kept(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    record = stack.crm.create_event(org, "ann", **EVENT)
    event = one_outlook_event(stack, ann)

    with stack.worker_stopped():
        ann.patch(event["id"], {"location": {"displayName": "Outlook room"}})
        stack.crm.update(org, "Events", record["id"], Event_Title="CRM title")

    def merged() -> tuple:
        fields = crm_record(stack, org, record["id"])["fields"]
        [outlook] = ann.events()
        return fields["Event_Title"], fields["Venue"], outlook["subject"], outlook["location"]["displayName"]

    wait_for(lambda: merged() == ("CRM title", "Outlook room", "CRM title", "Outlook room"), 60,
             what=f"both edits on both sides; {stack.worker_log()}")


def test_the_same_field_edited_on_both_sides_takes_the_later_edit_and_lists_the_clash(calendar_stack):
    stack = calendar_stack
    org, ann = connected(stack)
    crm_later = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "A"}))
    outlook_later = stack.crm.create_event(org, "ann", **(EVENT | {"Event_Title": "B"}))
    wait_for(lambda: subjects(ann) == ["A", "B"], 45, what=f"both events in Outlook; {stack.worker_log()}")
    outlook_id = {e["subject"]: e["id"] for e in ann.events()}

    with stack.worker_stopped():
        ann.patch(outlook_id["A"], {"subject": "A in Outlook"})
        stack.crm.update(org, "Events", crm_later["id"], Event_Title="A in the CRM")
        stack.crm.update(org, "Events", outlook_later["id"], Event_Title="B in the CRM")
        ann.patch(outlook_id["B"], {"subject": "B in Outlook"})
    expected = ["A in the CRM", "B in Outlook"]
    try:
        wait_for(lambda: titles(stack, org) == expected and subjects(ann) == expected, 60,
                 what="the later edit on both sides")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: CRM {titles(stack, org)}, Outlook {subjects(ann)}; {stack.worker_log()}") \
            from None

    def listed() -> dict:
        answer = stack.admin("GET", f"/v1/orgs/{org}/users/ann/integrations/{INTEGRATION}/conflicts")
        assert answer.status_code == 200, answer.text
        return {(c["crm_id"], c["field"]): c for c in answer.json()["conflicts"]}

    clashes = wait_for(lambda: len(listed()) == 2 and listed(), 30, what=f"both clashes listed: {listed()}")
    a, b = clashes[(crm_later["id"], "title")], clashes[(outlook_later["id"], "title")]
    assert (a["winner"], a["crm_value"], a["provider_value"]) == ("crm", "A in the CRM", "A in Outlook")
    assert (b["winner"], b["crm_value"], b["provider_value"]) == ("provider", "B in the CRM", "B in Outlook")
    # Nothing moves afterwards: both sides stay as merged (no ping-pong of the clash).
    assert titles(stack, org) == expected and subjects(ann) == expected
