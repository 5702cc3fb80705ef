"""`crmsync`: run the stack, a single worker, look at topics and at the state of integrations."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from services.common.settings import get_settings
from services.common.topics import all_topic_specs, ensure_topics
from services.processes import SERVICES, available, by_name

app = typer.Typer(help="crmsync: keep a CRM in sync with Google and Microsoft 365.", no_args_is_help=True)
console = Console()


@app.command()
def up(
    only: list[str] | None = typer.Option(None, "--only", help="start only these services (repeatable)"),
) -> None:
    """Start the whole system locally: broker, Redis, sandbox, reference CRM, ingest and every worker."""
    from deploy.local.stack import StackOptions, run

    raise typer.Exit(run(StackOptions(only=only or [])))


@app.command()
def worker(name: str = typer.Argument(..., help="a service name, see `crmsync services`")) -> None:
    """Run one service in the foreground, as production runs it (one process per service)."""
    spec = by_name(name)
    if spec is None:
        console.print(f"[red]no service named {name!r}[/red]; known: {', '.join(s.name for s in SERVICES)}")
        raise typer.Exit(2)
    if not spec.exists():
        console.print(f"[red]{name} is not built yet[/red] (no {spec.module}.__main__)")
        raise typer.Exit(2)
    os.execv(sys.executable, [sys.executable, "-m", spec.module])


@app.command()
def services() -> None:
    """List the services and which of them exist in this build."""
    table = Table("service", "module", "role", "built", "what it does")
    built = {s.name for s in available()}
    for spec in SERVICES:
        table.add_row(spec.name, spec.module, spec.role, "yes" if spec.name in built else "no", spec.summary)
    console.print(table)


@app.command()
def topics(create: bool = typer.Option(True, help="create the missing topics first")) -> None:
    """The topic registry, created idempotently, with the partitions the broker reports."""
    settings = get_settings()
    created = asyncio.run(_topics(settings, create))
    table = Table("topic", "partitions", "compacted", "purpose")
    for spec, partitions in created:
        table.add_row(spec.name, str(partitions) if partitions else "[red]missing[/red]",
                      "yes" if spec.compacted else "", spec.purpose)
    console.print(table)


async def _topics(settings, create: bool):
    from aiokafka.admin import AIOKafkaAdminClient

    if create:
        await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions, settings.topic_replication)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        specs = all_topic_specs()
        described = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics([s.name for s in specs])
                     if d.get("error_code", 0) == 0}
        return [(spec, described.get(spec.name)) for spec in specs]
    finally:
        await admin.close()


@app.command()
def status() -> None:
    """Is the broker up, is Redis up, and which integrations are failing (auth_failed) and why."""
    settings = get_settings()
    broker_ok, redis_ok, statuses = asyncio.run(_status(settings))
    console.print(f"broker {settings.kafka_bootstrap_servers}: {'[green]up[/green]' if broker_ok else '[red]down[/red]'}")
    console.print(f"redis  {settings.redis_url}: {'[green]up[/green]' if redis_ok else '[red]down[/red]'}")
    table = Table("org", "user", "integration", "state", "reason")
    for (org, user, integration), st in sorted(statuses.items()):
        colour = "red" if st.state != "ok" else "green"
        table.add_row(org, user, integration, f"[{colour}]{st.state}[/{colour}]", st.reason)
    console.print(table if statuses else "no integration has reported a status yet")
    if not (broker_ok and redis_ok):
        raise typer.Exit(1)


async def _status(settings):
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    from services.common.bus import Bus
    from services.common.state import StatusStore, connect

    bus = Bus(settings, client_id="crmsync-cli")
    try:
        await asyncio.wait_for(bus.start(), 5)
        broker_ok = await bus.reachable()
    except (KafkaError, OSError, TimeoutError):
        broker_ok = False
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await bus.stop()
    redis = connect(settings.redis_url)
    try:
        await asyncio.wait_for(redis.ping(), 3)
        redis_ok, statuses = True, await StatusStore(redis).all()
    except (RedisError, OSError, TimeoutError):
        redis_ok, statuses = False, {}
    finally:
        await redis.aclose()
    return broker_ok, redis_ok, statuses


if __name__ == "__main__":
    app()
