"""The processes crmsync is made of, by name: what `crmsync up` starts and `crmsync worker` runs.

A service is listed here once its package has a `__main__`; the stack starts only those that exist,
so the list grows as the workers are built without anything else to edit.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    role: str  # "infra-sim" (sandbox, reference CRM), "front" (ingest) or "worker"
    summary: str

    def exists(self) -> bool:
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("sandbox", "sandbox", "infra-sim", "Google and Microsoft API emulators (8090, https 8443)"),
    ServiceSpec("crm", "sandbox.crm", "infra-sim", "reference CRM backend (8070)"),
    ServiceSpec("ingest", "services.ingest", "front", "HTTP: CRM changes, webhooks, admin API (8080)"),
    ServiceSpec("calendar_sync", "services.calendar_sync", "worker", "Google and Microsoft calendars <-> CRM events"),
    ServiceSpec("contact_sync", "services.contact_sync", "worker", "Microsoft contacts and directory <-> CRM"),
    ServiceSpec("drive_sync", "services.drive_sync", "worker", "Google Drive folders and files <-> CRM records"),
    ServiceSpec("mail_fetch", "services.mail_fetch", "worker", "Gmail and POP3 mail -> CRM records"),
)


def available() -> list[ServiceSpec]:
    return [s for s in SERVICES if s.exists()]


def by_name(name: str) -> ServiceSpec | None:
    return next((s for s in SERVICES if s.name == name), None)


def worker_names() -> list[str]:
    return [s.name for s in SERVICES if s.role == "worker"]
