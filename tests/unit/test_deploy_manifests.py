"""deploy/ stays true to the code: every service it runs exists, every metric it graphs is declared."""
import json
import re
from pathlib import Path

import yaml

from services.common import metrics
from services.processes import by_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def manifests():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def test_every_deployment_runs_a_known_service_module():
    deployments = [m for m in manifests() if m["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        service = deployment["metadata"]["labels"]["service"]
        spec = by_name(service)
        assert spec is not None, f"{service} is not a crmsync service"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", spec.module]


def test_every_worker_deployment_autoscales_on_its_consumer_groups_lag():
    scaled = {m["spec"]["scaleTargetRef"]["name"]: m for m in manifests() if m["kind"] == "ScaledObject"}
    for deployment in (m for m in manifests() if m["kind"] == "Deployment"):
        service = deployment["metadata"]["labels"]["service"]
        if by_name(service).role != "worker":
            continue
        triggers = scaled[deployment["metadata"]["name"]]["spec"]["triggers"]
        assert triggers and all(t["type"] == "kafka" for t in triggers)
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {f"crmsync-{service}"}


def test_compose_services_are_known():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        if "command" in service and service["command"][:2] == ["python", "-m"]:
            assert by_name(name).module == service["command"][2]


def test_dashboard_graphs_only_declared_metrics():
    declared = {m._name for m in vars(metrics).values() if hasattr(m, "_name")}
    dashboard = json.loads((DEPLOY / "dashboards" / "crmsync.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b(crmsync_[a-z_]+?)(?:_total|_bucket)?\b", target["expr"])}
    assert used and used <= declared, used - declared
