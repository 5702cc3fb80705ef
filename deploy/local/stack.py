"""`crmsync up`: the whole system on one machine, with no set-up.

A broker (the cluster in KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu on 127.0.0.1:9092), a Redis
(REDIS_URL, else an embedded redis-server), the topics, then every service that exists as its own
process, each line of its output prefixed with its name. Ctrl-C (or SIGTERM) stops them all, last
started first; a service that dies stops the stack, so a broken start is never mistaken for a
running one.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from deploy.local.embedded import ChildProcess, start_redis, start_tansu
from services.common.settings import Settings
from services.common.topics import ensure_topics
from services.processes import ServiceSpec, available

COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class StackOptions:
    kafka_port: int = int(os.environ.get("CRMSYNC_EMBEDDED_KAFKA_PORT", "9092"))
    redis_port: int = int(os.environ.get("CRMSYNC_EMBEDDED_REDIS_PORT", "6390"))
    only: list[str] = field(default_factory=list)
    state_dir: Path = ROOT / ".state"


def sandbox_provider_env(env: dict[str, str]) -> dict[str, str]:
    """Settings that point every adapter at the local sandbox instead of Google and Microsoft."""
    http = f"http://127.0.0.1:{env.get('SANDBOX_HTTP_PORT', '8090')}"
    https = f"https://127.0.0.1:{env.get('SANDBOX_HTTPS_PORT', '8443')}"
    tls_dir = Path(env.get("SANDBOX_TLS_DIR", ROOT / ".state" / "tls"))
    ingest = f"http://127.0.0.1:{env.get('CRMSYNC_INGEST_PORT', '8080')}"
    return {
        "CRMSYNC_GOOGLE_API_BASE_URL": http,
        "CRMSYNC_GOOGLE_AUTH_URL": f"{http}/o/oauth2/v2/auth",
        "CRMSYNC_GOOGLE_TOKEN_URL": f"{http}/token",
        "CRMSYNC_MICROSOFT_AUTHORITY_BASE_URL": https,
        "CRMSYNC_MICROSOFT_GRAPH_BASE_URL": http,
        "CRMSYNC_PROVIDER_CA_BUNDLE": str(tls_dir / "ca.pem"),
        "CRMSYNC_PUBLIC_BASE_URL": ingest,
        "CRMSYNC_CRM_INGEST_URL": ingest,
    }


class PrefixedOutput:
    """Copies a child's output to our console, each line behind the child's coloured name."""

    def __init__(self, console: Console):
        self.console = console
        self.lock = threading.Lock()
        self.width = 8

    def follow(self, name: str, colour: str, stream) -> threading.Thread:
        def pump():
            for raw in iter(stream.readline, b""):
                line = Text(f"{name:<{self.width}} | ", style=colour)
                line.append(raw.decode(errors="replace").rstrip("\n"))
                with self.lock:
                    self.console.print(line, highlight=False, soft_wrap=True)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def say(self, message: str) -> None:
        with self.lock:
            self.console.print(Text(f"{'stack':<{self.width}} | ", style="bold") + Text(message))


class Stack:
    def __init__(self, options: StackOptions, console: Console | None = None):
        self.options = options
        self.out = PrefixedOutput(console or Console(soft_wrap=True))
        self.infra: list[ChildProcess] = []
        self.children: list[tuple[ServiceSpec, subprocess.Popen]] = []
        self.stopping = threading.Event()

    def _infrastructure(self) -> dict[str, str]:
        env: dict[str, str] = {}
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            self.options.state_dir.mkdir(exist_ok=True)
            broker = start_tansu(self.options.kafka_port, log_path=self.options.state_dir / "tansu.log")
            self.infra.append(broker)
            bootstrap = broker.address
            self.out.say(f"embedded Tansu broker on {bootstrap} (memory storage)")
        else:
            self.out.say(f"using Kafka at {bootstrap}")
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis = start_redis(self.options.redis_port)
            self.infra.append(redis)
            redis_url = redis.address
            self.out.say(f"embedded Redis at {redis_url}")
        else:
            self.out.say(f"using Redis at {redis_url}")
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        env["REDIS_URL"] = redis_url
        return env

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self._infrastructure())
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        for name, value in sandbox_provider_env(env).items():
            env.setdefault(name, value)  # the local stack's providers are the sandbox's, unless told otherwise
        settings = Settings(kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], redis_url=env["REDIS_URL"])
        created = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions,
                                            settings.topic_replication))
        self.out.say(f"topics ready ({len(created)} created)")
        services = [s for s in available() if not self.options.only or s.name in self.options.only]
        for index, spec in enumerate(services):
            process = subprocess.Popen([sys.executable, "-m", spec.module], env=env, cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            self.children.append((spec, process))
            self.out.follow(spec.name, COLOURS[index % len(COLOURS)], process.stdout)
            self.out.say(f"started {spec.name} (pid {process.pid}): {spec.summary}")

    def wait(self) -> int:
        """Block until a signal or until a service exits; returns the stack's exit code."""
        while not self.stopping.wait(0.5):
            for spec, process in self.children:
                if process.poll() is not None:
                    self.out.say(f"{spec.name} exited with code {process.returncode}: stopping the stack")
                    return 1
        return 0

    def stop(self, timeout_s: float = 15) -> None:
        for spec, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for spec, process in reversed(self.children):
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.out.say(f"{spec.name} did not stop in {timeout_s}s: killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for child in reversed(self.infra):
            child.stop()
        self.out.say("stopped")


def run(options: StackOptions) -> int:
    stack = Stack(options)

    def request_stop(signum, frame):
        stack.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
        code = stack.wait()
    except Exception as exc:
        stack.out.say(f"cannot start: {exc}")
        code = 1
    finally:
        stack.stop()
    return code
