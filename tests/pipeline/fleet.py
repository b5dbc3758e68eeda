"""Start real ``celery worker``, ``celery beat`` and ``flower`` processes for a test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
ALL_QUEUES = "critical,default,bulk,llm,maintenance"


@dataclass
class Fleet:
    """The processes of one test; everything is stopped (and killed if need be) at the end."""

    tmp: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = proc
        return proc

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def worker(
        self, name: str = "w1", *, queues: str = ALL_QUEUES, concurrency: int = 2
    ) -> subprocess.Popen[bytes]:
        proc = self._start(
            name,
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
        wait_for(lambda: self._alive(name) and " ready." in self.log(name), timeout=60)
        return proc

    def beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        schedule = self.tmp / f"{name}-schedule"
        proc = self._start(name, [*CELERY, "beat", "-s", str(schedule), "-l", "info"])
        wait_for(lambda: self._alive(name) and "beat: Starting" in self.log(name), timeout=60)
        return proc

    def flower(self, port: int) -> subprocess.Popen[bytes]:
        return self._start("flower", [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"])

    def _alive(self, name: str) -> bool:
        proc = self.processes[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
        return True

    def kill9(self, name: str) -> None:
        """``kill -9`` the whole process group (the worker and its pool children)."""
        proc = self.processes.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM to the main process (a warm shutdown, as systemd's KillMode=mixed does);
        whatever is left of the group after ``timeout`` is killed."""
        proc = self.processes.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def fleet_env(
    *,
    database_url: str,
    broker_url: str,
    lock_redis_url: str,
    beat: Mapping[str, float] | None = None,
    **settings: Any,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "MEMTASKS_DATABASE_URL": database_url,
            "MEMTASKS_BROKER_URL": broker_url,
            "MEMTASKS_LOCK_REDIS_URL": lock_redis_url,
            "MEMTASKS_HANDLERS": "tests.pipeline.plugins:build_registry",
            "MEMTASKS_BACKOFF_JITTER": "0",
            "MEMTASKS_BEAT_INTERVALS": json.dumps(dict(beat or {})),
        }
    )
    env.update({f"MEMTASKS_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def wait_until(condition: Any, timeout: float, what: str, fleet: Fleet | None = None) -> None:
    """:func:`wait_for` that shows the fleet's logs when the deadline passes."""
    try:
        wait_for(condition, timeout=timeout, interval=0.1)
    except AssertionError:
        tails = ""
        if fleet is not None:
            tails = "\n".join(f"--- {n} ---\n{fleet.log(n)[-3000:]}" for n in fleet.logs)
        raise AssertionError(f"{what}: not within {timeout} s\n{tails}") from None


def observe(duration_s: float) -> None:
    """Let a fixed window of wall time pass (the claim under test is about that window)."""
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        time.sleep(0.1)
