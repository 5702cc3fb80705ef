"""`python -m sandbox`: the provider sandbox on 8090 (http) and 8443 (https identity)."""
from __future__ import annotations

import gc
import os
from pathlib import Path

from sandbox.app import SandboxConfig
from sandbox.server import run_servers, serve


def main() -> None:
    http_port = int(os.environ.get("SANDBOX_HTTP_PORT", "8090"))
    https_port = int(os.environ.get("SANDBOX_HTTPS_PORT", "8443"))
    config = SandboxConfig(
        http_base_url=f"http://127.0.0.1:{http_port}",
        identity_base_url=f"https://127.0.0.1:{https_port}",
        tls_dir=Path(os.environ.get("SANDBOX_TLS_DIR", ".state/tls")),
    )
    keep_collections_rare()
    run_servers(serve(config, http_port, https_port))


def keep_collections_rare() -> None:
    """The sandbox keeps every event, message and record it is sent as long-lived dicts, and a call
    allocates a few hundred short-lived objects: with CPython's default thresholds the cyclic collector
    runs every few calls and its older generations walk the whole growing store (with the collector off,
    a batched insert took a quarter to a third less server CPU, in process, 10,000-30,000 events
    stored). What is loaded at start-up (the modules) is moved out of the collector's sight, and young
    collections run every 20,000 allocations, not 700. Reference counting still frees nearly everything
    at once; the collector only finds cycles, which the sandbox seldom makes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


if __name__ == "__main__":
    main()
