"""The route table names each call once: from its memory of (method, path) as from the routes."""
from sandbox.app import create_app
from sandbox.dispatch import RouteTable

CALLS = [("POST", "/calendar/v3/calendars/primary/events"), ("GET", "/calendar/v3/calendars/primary/events/e1"),
         ("GET", "/calendar/v3/calendars/ann@example.com/events/e2"), ("DELETE", "/calendar/v3/calendars/c/events/e3"),
         ("GET", "/calendar/v3/nothing/here"), ("POST", "/batch/calendar/v3"), ("GET", "/v1.0/me/events")]


def test_a_remembered_call_resolves_as_the_routes_resolve_it_and_the_memory_stays_bounded():
    app = create_app()
    remembering, fresh = RouteTable(app), RouteTable(app)
    remembering.CACHED_CALLS = 3
    for _ in range(3):
        for method, path in CALLS:
            assert remembering.resolve(method, path) == fresh._match(method, path)
            assert len(remembering._resolved) <= 3
    insert = remembering.resolve(*CALLS[0])
    assert insert.template == "/calendar/v3/calendars/{calendarId}/events"
    assert insert.path_params == {"calendarId": "primary"} and insert.endpoint is not None
    assert remembering.resolve(*CALLS[2]).path_params == {"calendarId": "ann@example.com", "eventId": "e2"}
