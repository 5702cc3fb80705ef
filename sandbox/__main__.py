"""`python -m sandbox`: the provider sandbox on 8090 (http) and 8443 (https identity)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sandbox.app import SandboxConfig
from sandbox.server import serve


def main() -> None:
    http_port = int(os.environ.get("SANDBOX_HTTP_PORT", "8090"))
    https_port = int(os.environ.get("SANDBOX_HTTPS_PORT", "8443"))
    config = SandboxConfig(
        http_base_url=f"http://127.0.0.1:{http_port}",
        identity_base_url=f"https://127.0.0.1:{https_port}",
        tls_dir=Path(os.environ.get("SANDBOX_TLS_DIR", ".state/tls")),
    )
    asyncio.run(serve(config, http_port, https_port))


if __name__ == "__main__":
    main()
