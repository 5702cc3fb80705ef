"""Serve the sandbox: provider APIs over http, the same app over https for the identity endpoint."""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import uvicorn
import uvloop

from sandbox.app import Sandbox, SandboxConfig, create_app
from sandbox.http_protocol import OneSendHttpToolsProtocol
from sandbox.tls import TlsFiles, ensure_certificates


@dataclass
class RunningSandbox:
    sandbox: Sandbox
    http_url: str
    https_url: str
    tls: TlsFiles
    servers: list[uvicorn.Server]
    thread: threading.Thread | None = None

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def build_servers(config: SandboxConfig, http_port: int, https_port: int, host: str = "127.0.0.1"):
    tls = ensure_certificates(config.tls_dir)
    sandbox = Sandbox(config=config)
    app = create_app(sandbox)
    # uvloop and httptools named (pinned in pyproject.toml), not left to "auto", which falls back quietly to
    # the slower pure-Python ones (httptools through OneSendHttpToolsProtocol: an answer in one send); idle
    # connections kept a minute, not uvicorn's 5 s, so a client pausing
    # between batches (httplib2 does not resend a large body on a dropped connection) keeps its connection.
    # `loop` only takes effect through uvicorn.run(): the loop the servers run on is chosen by `run_servers`.
    # proxy_headers off: nothing sits between a client and the sandbox, so X-Forwarded-* is never honoured
    # and the middleware that would look for it is not run on every call.
    common = {"host": host, "log_level": "warning", "lifespan": "on", "access_log": False, "loop": "uvloop",
              "http": OneSendHttpToolsProtocol, "timeout_keep_alive": 60, "proxy_headers": False}
    http = uvicorn.Server(uvicorn.Config(app, port=http_port, **common))
    https = uvicorn.Server(
        uvicorn.Config(
            app, port=https_port, ssl_certfile=str(tls.server_cert), ssl_keyfile=str(tls.server_key), **common
        )
    )
    for server in (http, https):
        server.install_signal_handlers = lambda: None  # the owner of the process handles signals
    return sandbox, tls, [http, https]


async def serve(config: SandboxConfig, http_port: int, https_port: int) -> None:
    """Serve until SIGINT or SIGTERM, then let both servers finish their requests."""
    import signal

    sandbox, _, servers = build_servers(config, http_port, https_port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: [setattr(s, "should_exit", True) for s in servers])
    await _gather(sandbox, servers)


def run_servers(main) -> None:
    """Run the servers' coroutine on uvloop: `uvicorn.Server.serve()` runs on whatever loop it is awaited
    on, and the stock asyncio loop costs a single call about a third more server CPU."""
    uvloop.run(main)


def start_in_thread(config: SandboxConfig, http_port: int, https_port: int, timeout_s: float = 15) -> RunningSandbox:
    """Start both servers on a background thread and return once they accept connections."""
    sandbox, tls, servers = build_servers(config, http_port, https_port)
    thread = threading.Thread(
        target=lambda: run_servers(_gather(sandbox, servers)), name="sandbox", daemon=True
    )
    thread.start()
    running = RunningSandbox(
        sandbox, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", tls, servers, thread
    )
    import time

    deadline = time.monotonic() + timeout_s
    while not all(s.started for s in servers):
        if time.monotonic() > deadline or not thread.is_alive():
            running.stop()
            raise RuntimeError("sandbox did not start")
        time.sleep(0.02)
    return running


async def _gather(sandbox, servers: list[uvicorn.Server]) -> None:
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        await sandbox.state.close()
