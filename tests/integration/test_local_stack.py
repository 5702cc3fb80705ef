"""`crmsync up`: embedded broker and Redis, the services with prefixed logs, a clean stop on Ctrl-C."""
import os
import signal
import subprocess
import sys

import httpx
import pytest

from services.ingest.client import IngestClient
from tests.fixtures.net import free_port, port_open, wait_for
from tests.fixtures.processes import ROOT
from tests.support.factories import crm_change

pytestmark = pytest.mark.integration


def test_up_starts_embedded_infrastructure_and_services_and_stops_them_all_on_ctrl_c(tmp_path):
    ports = {name: free_port() for name in ("kafka", "redis", "ingest", "sandbox", "sandbox_tls")}
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update({
        "CRMSYNC_EMBEDDED_KAFKA_PORT": str(ports["kafka"]),
        "CRMSYNC_EMBEDDED_REDIS_PORT": str(ports["redis"]),
        "CRMSYNC_INGEST_PORT": str(ports["ingest"]),
        "SANDBOX_HTTP_PORT": str(ports["sandbox"]),
        "SANDBOX_HTTPS_PORT": str(ports["sandbox_tls"]),
        "SANDBOX_TLS_DIR": str(tmp_path / "tls"),
    })
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        stack = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--only", "ingest", "--only", "sandbox"],
                                 env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ingest_url = f"http://127.0.0.1:{ports['ingest']}"
    try:
        wait_for(lambda: httpx.get(f"{ingest_url}/readyz").status_code == 200, 60,
                 what=f"ingest ready; stack log:\n{log_path.read_text()[-2000:]}")
        assert httpx.get(f"http://127.0.0.1:{ports['sandbox']}/_sandbox/counters").status_code == 200
        response = IngestClient(ingest_url, "crmsync-dev-hmac-secret").post_changes([crm_change()])
        assert response.status_code == 202, "the documented dev secret works with `make run`"
        output = log_path.read_text()
        assert f"embedded Tansu broker on 127.0.0.1:{ports['kafka']}" in output
        assert f"embedded Redis at redis://127.0.0.1:{ports['redis']}/0" in output
        assert "ingest   | " in output, "service output is prefixed with its name"
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        code = stack.wait(60)
    assert code == 0, log_path.read_text()[-2000:]
    assert "stack    | stopped" in log_path.read_text()
    for name, port in ports.items():
        assert not port_open(port), f"{name} still listening on {port} after the stack stopped"
