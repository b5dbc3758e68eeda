"""The run's Celery processes: prefork workers and beats, and the signals the faults send them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.chaos.procs import children_of, end, signal_group, spawn, wait_until

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
QUEUES = "critical,default,bulk,llm,maintenance"
START_TIMEOUT_S = 90.0


class ChaosFleet:
    """Workers ``w1``, ``w2`` … (``celery worker -P prefork -c N``) and beats, each logging to
    ``<root>/<name>.log`` (appended across restarts)."""

    def __init__(self, root: Path, env: Mapping[str, str], concurrency: int) -> None:
        self.root = root
        self.env = dict(env)
        self.concurrency = concurrency
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.beats: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def log(self, name: str, since: int = 0) -> str:
        path = self.log_path(name)
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_size(self, name: str) -> int:
        path = self.log_path(name)
        return path.stat().st_size if path.exists() else 0

    def logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace") for path in sorted(self.root.glob("*.log"))}

    # ── workers ──────────────────────────────────────────────────────────────

    def start_workers(self, names: list[str]) -> None:
        offsets = {name: self._launch_worker(name) for name in names}
        for name, offset in offsets.items():
            self._wait_ready(name, offset)

    def start_worker(self, name: str) -> None:
        self._wait_ready(name, self._launch_worker(name))

    def _launch_worker(self, name: str) -> int:
        offset = self.log_size(name)
        argv = [
            *CELERY,
            "worker",
            "-n",
            f"{name}@%h",
            "-Q",
            QUEUES,
            "-P",
            "prefork",
            "-c",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        self.workers[name] = spawn(argv, log=self.log_path(name), env=self.env)
        return offset

    def _wait_ready(self, name: str, offset: int) -> None:
        def ready() -> bool:
            self._check_alive(name, self.workers[name])
            return " ready." in self.log(name, offset) and len(self.children(name)) == self.concurrency

        wait_until(ready, START_TIMEOUT_S, f"worker {name} ready")

    def _check_alive(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")

    def main_pid(self, name: str) -> int:
        return self.workers[name].pid

    def children(self, name: str) -> list[int]:
        return children_of(self.workers[name].pid)

    def healthy(self, name: str) -> bool:
        proc = self.workers.get(name)
        return proc is not None and proc.poll() is None and len(self.children(name)) == self.concurrency

    def kill_child(self, name: str, pid: int) -> None:
        """``kill -9`` one pool process; the worker starts a new one."""
        if pid not in self.children(name):
            raise RuntimeError(f"{pid} is not a pool process of {name}")
        os.kill(pid, signal.SIGKILL)

    def kill_worker(self, name: str) -> list[int]:
        """``kill -9`` the whole worker: its main process and every pool process."""
        proc = self.workers.pop(name)
        pids = [proc.pid, *children_of(proc.pid)]
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=30)
        return pids

    def pause(self, name: str) -> list[int]:
        """``SIGSTOP`` the worker's whole process group; returns its processes."""
        proc = self.workers[name]
        pids = [proc.pid, *children_of(proc.pid)]
        signal_group(proc, signal.SIGSTOP)
        return pids

    def resume(self, name: str) -> None:
        signal_group(self.workers[name], signal.SIGCONT)

    # ── beats ────────────────────────────────────────────────────────────────

    def start_beat(self, name: str) -> None:
        offset = self.log_size(name)
        schedule = self.root / f"{name}-schedule-{offset}"
        argv = [*CELERY, "beat", "-s", str(schedule), "-l", "info"]
        self.beats[name] = spawn(argv, log=self.log_path(name), env=self.env)

        def started() -> bool:
            self._check_alive(name, self.beats[name])
            return "beat: Starting" in self.log(name, offset)

        wait_until(started, START_TIMEOUT_S, f"beat {name} started")

    def stop_beat(self, name: str) -> None:
        end(self.beats.pop(name), signal.SIGTERM, timeout=15)

    # ── the end ──────────────────────────────────────────────────────────────

    def close(self) -> None:
        """A warm shutdown of every process (SIGTERM), then ``SIGKILL`` for what is left."""
        procs = [*self.workers.values(), *self.beats.values()]
        self.workers.clear()
        self.beats.clear()
        for proc in procs:
            signal_group(proc, signal.SIGCONT)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            end(proc, signal.SIGTERM, timeout=30)
