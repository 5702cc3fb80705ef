"""The crmsync CLI against the real broker and Redis."""
import asyncio
import subprocess
import sys

import pytest

from services.common.state import IntegrationStatus, StatusStore, connect
from tests.fixtures.processes import ROOT, settings_env
from tests.support.factories import unique_org

pytestmark = pytest.mark.integration


def crmsync(settings, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=settings_env(settings) | {"COLUMNS": "200"} | env, timeout=60)


def test_topics_lists_the_registry_with_partitions(settings):
    result = crmsync(settings, "topics")
    assert result.returncode == 0, result.stderr
    for topic in ("crm.changes", "crm.changes.dlq", "integration.configs", "provider.notifications", "sync.jobs"):
        assert topic in result.stdout
    assert "missing" not in result.stdout


def test_status_shows_failing_integrations_with_their_reason(settings, redis_url):
    org = unique_org()

    async def fail():
        redis = connect(redis_url)
        await StatusStore(redis).set(org, "ann", "mail", IntegrationStatus("auth_failed", "-ERR [AUTH] bad password"))
        await redis.aclose()

    asyncio.run(fail())
    result = crmsync(settings, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if org in line)
    assert "auth_failed" in line and "bad password" in line
    assert "up" in result.stdout


def test_status_fails_when_the_broker_is_unreachable(settings):
    result = crmsync(settings, "status", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert result.returncode == 1
    assert "down" in result.stdout


def test_worker_refuses_an_unknown_service(settings):
    result = crmsync(settings, "worker", "fax_sync")
    assert result.returncode == 2
    assert "no service named 'fax_sync'" in result.stdout
