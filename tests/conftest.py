"""Fixtures shared by the whole suite; each lives in tests/fixtures/ and is imported here."""
from tests.fixtures.infra import kafka_bootstrap, redis_url  # noqa: F401
from tests.fixtures.ingest import ingest, settings  # noqa: F401
from tests.fixtures.processes import start_service  # noqa: F401
from tests.fixtures.sandbox import sandbox, sandbox_server  # noqa: F401
from tests.fixtures.dovecot import dovecot  # noqa: F401
from tests.fixtures.calendar_stack import calendar_services, calendar_stack  # noqa: F401
