"""Start and stop a local fleet: a private Redis when none answers, workers per queue, beat, Flower."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from memtasks.domain.errors import ConfigurationError

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]

WORKER_GROUPS: tuple[tuple[str, str, int], ...] = (
    ("critical", "critical", 2),
    ("default", "default", 2),
    ("bulk", "bulk,llm", 2),
    ("maintenance", "maintenance", 1),
)
"""(name, queues, concurrency) of the local fleet's workers: one group per queue."""


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_argv(binary: str, port: int, directory: Path) -> list[str]:
    """A private ``redis-server``: loopback only, on ``port``, nothing persisted, files in
    ``directory``."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]


@dataclass
class LocalFleet:
    """Every process this fleet started, stopped (and reaped) by :meth:`stop`."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - argv is built here from constants and paths
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait_for(self, name: str, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.log(name):
            proc = self.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.log(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not start within {timeout:.0f} s (see {self.log_dir}/{name}.log)"
                )
            time.sleep(0.1)

    def start_redis(self) -> str:
        """A private Redis on a free port (its data in ``log_dir``); its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError(
                "no Redis answers and redis-server is not installed — install it "
                "(`bash scripts/services.sh`, or apt-get install redis-server) or set MEMTASKS_BROKER_URL"
            )
        port = free_port()
        self._start("redis", redis_server_argv(binary, port, self.log_dir))
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not redis_answers(url + "/0"):
            if time.monotonic() > deadline or self.processes["redis"].poll() is not None:
                raise RuntimeError(f"the private Redis did not start: {self.log('redis')[-1000:]}")
            time.sleep(0.1)
        return url

    def start_worker(self, name: str, queues: str, concurrency: int) -> None:
        self._start(
            f"worker-{name}",
            [
                *CELERY,
                "worker",
                "-n",
                f"{name}@%h",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "--without-mingle",
                "--without-gossip",
                "-l",
                "info",
            ],
        )

    def start_beat(self) -> None:
        self._start("beat", [*CELERY, "beat", "-s", str(self.log_dir / "celerybeat-schedule"), "-l", "info"])

    def start_flower(self, port: int) -> None:
        self._start("flower", [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"])

    def start_console(self, port: int) -> None:
        """The web console on loopback (``memtasks web``)."""
        command = [sys.executable, "-c", "from memtasks.command import main; main()"]
        self._start("web", [*command, "web", "--address", "127.0.0.1", "--port", str(port)])

    def wait_ready(self) -> None:
        for name in self.processes:
            if name.startswith("worker-"):
                self._wait_for(name, " ready.")
            elif name == "beat":
                self._wait_for(name, "beat: Starting")

    def stop(self, timeout: float = 60) -> list[str]:
        """Warm-stop the Celery processes, then Redis; kill what does not stop. Names still alive."""
        order = [n for n in self.processes if n != "redis"] + (["redis"] if "redis" in self.processes else [])
        for name in order:
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in order:
            proc = self.processes[name]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # pool children left behind, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        alive = [name for name, proc in self.processes.items() if proc.poll() is None]
        self.processes.clear()
        return alive
