"""Round trips: a CRM event that goes out to a provider and comes back is the same event.

CRM -> canonical -> Google -> canonical equals the first canonical event for every event Google can
hold; the same for Graph where Graph can hold it (one reminder, a pattern it knows, no invitee answers
written). Google and Graph are made to answer in UTC, as they may, so the zones must survive on their own.
"""
import datetime as dt

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.calendar_sync.mapping import (
    canonical_to_crm,
    canonical_to_google,
    canonical_to_graph,
    crm_to_canonical,
    google_to_canonical,
    graph_to_canonical,
)
from services.calendar_sync.model import known_zone
from tests.unit.test_calendar_mapping_graph import as_graph_returns

ZONES = ["Europe/Berlin", "Europe/Amsterdam", "America/New_York", "America/St_Johns", "Asia/Kolkata",
         "Australia/Lord_Howe", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"]
GRAPH_RULES = ["RRULE:FREQ=DAILY", "RRULE:FREQ=DAILY;INTERVAL=3;COUNT=7", "RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR",
               "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;WKST=SU", "RRULE:FREQ=MONTHLY;BYMONTHDAY=15",
               "RRULE:FREQ=MONTHLY;BYDAY=-1FR", "RRULE:FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1",
               "RRULE:FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=1", "RRULE:FREQ=YEARLY;BYDAY=2MO;BYMONTH=10"]
GOOGLE_ONLY_RULES = ["RRULE:FREQ=MONTHLY;BYMONTHDAY=-1", "RRULE:FREQ=DAILY;BYHOUR=9,17"]
EXCEPTIONS = ["EXDATE;VALUE=DATE:20300101", "RDATE:20300102T100000Z"]

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)
names = st.text(st.characters(whitelist_categories=("L",)) | st.just(" "), max_size=20)
addresses = st.builds("{}@{}.example".format, st.from_regex(r"[A-Za-z0-9._]{1,12}", fullmatch=True),
                      st.sampled_from(["ann", "bob", "Corp"]))
instants = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1),
                        timezones=st.just(dt.UTC)).map(lambda moment: moment.replace(microsecond=0))


@st.composite
def crm_events(draw, *, reminders_max: int = 5, answers: bool = True, rules=GRAPH_RULES + GOOGLE_ONLY_RULES,
               exceptions: bool = True) -> dict:
    """A CRM event record's fields, anything a CRM user could write that the provider can hold."""
    zone = draw(st.sampled_from(ZONES))
    fields = {"Event_Title": draw(text | st.sampled_from(["", "Not specified"])), "Venue": draw(text),
              "Description": draw(text), "Time_Zone": zone}
    if draw(st.booleans()):
        first = draw(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2040, 1, 1)))
        last = first + dt.timedelta(days=draw(st.integers(0, 30)))
        fields.update(All_day=True, Start_DateTime=first.isoformat(), End_DateTime=last.isoformat())
    else:
        start = draw(instants).astimezone(known_zone(zone))
        end = start + dt.timedelta(minutes=draw(st.integers(0, 60 * 24 * 3)))
        fields.update(All_day=False, Start_DateTime=start.isoformat(), End_DateTime=end.isoformat())
    fields["Participants"] = [
        {"type": "email", "Email": draw(addresses), "name": draw(names), "optional": draw(st.booleans()),
         "status": draw(st.sampled_from(["needs_action", "accepted", "declined", "tentative"])) if answers
         else "needs_action"}
        for _ in range(draw(st.integers(0, 4)))
    ]
    fields["Reminders"] = [{"minutes": draw(st.integers(0, 40320)), "method": "popup"}
                           for _ in range(draw(st.integers(0, reminders_max)))]
    fields["Recurrence"] = draw(st.lists(st.sampled_from(rules), max_size=1))
    if fields["Recurrence"] and exceptions:
        fields["Recurrence"] += draw(st.lists(st.sampled_from(EXCEPTIONS), max_size=2))
    return fields


def google_returns(body: dict) -> dict:
    """What Google answers for a body we wrote, its times given in UTC."""
    def in_utc(value: dict) -> dict:
        if "date" in value:
            return value
        moment = dt.datetime.fromisoformat(value["dateTime"]).astimezone(dt.UTC)
        return {**value, "dateTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {**body, "id": "evt00001", "status": "confirmed", "start": in_utc(body["start"]), "end": in_utc(body["end"])}


def is_ambiguous_wall_clock(fields: dict) -> bool:
    """A time in the hour repeated when clocks go back: Graph's wall-clock dateTime cannot say which one."""
    if fields["All_day"]:
        return False
    zone = known_zone(fields["Time_Zone"])
    for text_value in (fields["Start_DateTime"], fields["End_DateTime"]):
        local = dt.datetime.fromisoformat(text_value).replace(tzinfo=None)
        if local.replace(tzinfo=zone, fold=0).utcoffset() != local.replace(tzinfo=zone, fold=1).utcoffset():
            return True
    return False


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(crm_events())
def test_a_crm_event_comes_back_from_google_unchanged(fields):
    first = crm_to_canonical(fields).event
    assert google_to_canonical(google_returns(canonical_to_google(first))).event == first


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(crm_events(reminders_max=1, answers=False, rules=GRAPH_RULES, exceptions=False))
def test_a_crm_event_comes_back_from_graph_unchanged_where_graph_can_hold_it(fields):
    assume(not is_ambiguous_wall_clock(fields))
    first = crm_to_canonical(fields).event
    assert graph_to_canonical(as_graph_returns(canonical_to_graph(first))).event == first


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(crm_events())
def test_a_crm_event_written_back_to_the_crm_is_the_same_event(fields):
    first = crm_to_canonical(fields).event
    assert crm_to_canonical(canonical_to_crm(first)).event == first


@given(crm_events())
def test_what_google_sends_to_the_crm_comes_back_to_google_unchanged(fields):
    from_google = google_to_canonical(google_returns(canonical_to_google(crm_to_canonical(fields).event))).event
    via_crm = crm_to_canonical(canonical_to_crm(from_google)).event
    assert canonical_to_google(via_crm) == canonical_to_google(from_google)
    assert via_crm.fingerprint() == from_google.fingerprint()  # an echo, recognised as such


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2040, 1, 1)), st.integers(1, 14),
       st.sampled_from(["W. Europe Standard Time", "Line Islands Standard Time", "Hawaiian Standard Time",
                        "Dateline Standard Time", "New Zealand Standard Time", "India Standard Time"]))
def test_an_all_day_event_from_graph_is_the_same_days_in_whatever_zone_graph_renders_it(first, days, zone):
    tz = known_zone({"W. Europe Standard Time": "Europe/Berlin", "Line Islands Standard Time": "Pacific/Kiritimati",
                     "Hawaiian Standard Time": "Pacific/Honolulu", "Dateline Standard Time": "Etc/GMT+12",
                     "New Zealand Standard Time": "Pacific/Auckland", "India Standard Time": "Asia/Kolkata"}[zone])

    def rendered_in_utc(date: dt.date) -> dict:
        midnight = dt.datetime.combine(date, dt.time(), tz).astimezone(dt.UTC)
        return {"dateTime": midnight.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}
    raw = {"subject": "Off", "isAllDay": True, "originalStartTimeZone": zone, "originalEndTimeZone": zone,
           "start": rendered_in_utc(first), "end": rendered_in_utc(first + dt.timedelta(days=days))}
    event = graph_to_canonical(raw).event
    assert (event.start.date, event.end.date) == (first, first + dt.timedelta(days=days))
