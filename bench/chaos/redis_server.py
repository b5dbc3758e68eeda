"""A private ``redis-server`` for one run: started on a free port, restarted and flushed by the
fault driver, stopped at the end. Never the shared server: every destructive call first
checks that the server answering on the port is the process this run started."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import redis

from bench.chaos.procs import end, free_port, spawn, wait_until
from memtasks.demo.fleet import redis_server_argv

REDIS_SERVER = "redis-server"


def find_redis_server() -> str | None:
    return shutil.which(REDIS_SERVER) or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class PrivateRedis:
    """``redis-server --save "" --appendonly no`` in ``root``, on a port of its own."""

    def __init__(self, root: Path, binary: str, *, password: str | None = None) -> None:
        self.root = root
        self.binary = binary
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def server_url(self) -> str:
        """``redis://[:password@]127.0.0.1:port``, without a database number."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.server_url}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=2,
        )

    def start(self) -> None:
        argv = [
            *redis_server_argv(self.binary, self.port, self.root),
            "--protected-mode",
            "yes",
            *(["--requirepass", self.password] if self.password else []),
        ]
        self.proc = spawn(argv, log=self.root / "redis.log")
        wait_until(self._answers, 20, f"the private redis-server on port {self.port}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
        client = self.client()
        try:
            return bool(client.ping()) and self._is_ours(client)
        finally:
            client.close()

    def _is_ours(self, client: redis.Redis) -> bool:
        info = cast(dict[str, Any], client.info("server"))
        return self.proc is not None and int(info["process_id"]) == self.proc.pid

    def restart(self, down_s: float) -> None:
        """Stop the server (its data goes: nothing is persisted), wait ``down_s``, start it."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def flushall(self) -> None:
        """``FLUSHALL`` on this run's server (refused when another process answers the port)."""
        client = self.client()
        try:
            if not self._is_ours(client):
                raise RuntimeError(f"port {self.port} is not this run's redis-server: FLUSHALL refused")
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, signal.SIGTERM, timeout=10)
            self.proc = None
