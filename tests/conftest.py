"""Fixtures shared by the whole suite; each lives in tests/fixtures/ and is imported here."""
from tests.fixtures.sandbox import sandbox, sandbox_server  # noqa: F401
