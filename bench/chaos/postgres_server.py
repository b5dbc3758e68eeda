"""The run's PostgreSQL: a private cluster, or a database of its own on the shared server.

**Private** (``initdb`` installed): a throw-away cluster in the run's directory, owned by the
``postgres`` user (the run may be root; PostgreSQL refuses to run as root), on a free port
with its socket in the run's directory, durable as in production: ``fsync=on``,
``full_page_writes=on``, ``synchronous_commit=on``. Its faults: a crash (``SIGKILL`` of the
postmaster and every backend at once — no shutdown, no checkpoint, no goodbye to the
clients; the new postmaster must run crash recovery, and the run checks that it did) and
terminating every connection to the run's database.

**Shared** (no ``initdb``): a database ``memtasks_chaos_<random>`` on the server at
``TEST_POSTGRES_URL``, dropped at the end. The only fault is terminating the connections to
*that* database (``pg_stat_activity`` filtered by its name); the server is never restarted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Protocol, cast

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from bench.chaos.procs import children_of, end, free_port, signal_group, spawn, wait_until

DATABASE = "chaos"
CRASH_RECOVERY_MARKERS = (
    "database system was interrupted",
    "was not properly shut down; automatic recovery in progress",
)
SHARED_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = %s AND pid <> pg_backend_pid()"
)


class Database(Protocol):
    mode: str
    url: str

    def terminate_backends(self) -> int: ...

    def close(self) -> None: ...


def postgres_bindir() -> Path | None:
    """The directory of ``initdb``/``postgres`` (``/usr/lib/postgresql/<v>/bin`` on Debian)."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def private_cluster_problem() -> str | None:
    """Why a private cluster cannot be had here, or None."""
    if postgres_bindir() is None:
        return "initdb is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to own the cluster"
    return None


class PrivatePostgres:
    """A cluster of this run alone; ``url`` names its database ``chaos``."""

    mode = "private-cluster"

    def __init__(self, root: Path, server_settings: dict[str, str] | None = None) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("initdb is not installed")
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.server_settings = dict(server_settings or {})
        """More ``-c name=value`` for the server, after the ones every run has."""
        root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(root, self.user, self.user)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def init(self) -> None:
        log = self.root / "initdb.log"
        argv = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        proc = spawn([*argv, "-E", "UTF8", "--no-sync"], log=log, user=self.user, cwd=self.root)
        if proc.wait(timeout=120) != 0:
            raise RuntimeError(f"initdb failed:\n{log.read_text(errors='replace')[-2000:]}")
        self.start()
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def start(self) -> None:
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=on",
            "-c",
            "full_page_writes=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "max_connections=300",
            *(arg for name, value in self.server_settings.items() for arg in ("-c", f"{name}={value}")),
        ]
        self.proc = spawn(argv, log=self.root / "postgres.log", user=self.user, cwd=self.root)
        wait_until(self._answers, 60, f"the private PostgreSQL on port {self.port}")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{log}")
        with self._admin():
            return True

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )

    def crash_restart(self, down_s: float) -> dict[str, object]:
        """Crash the server: ``SIGKILL`` to the postmaster and all its backends at once (they
        share its process group), ``down_s`` without a server, then a new postmaster, which
        must run crash recovery. What happened, for the fault log."""
        assert self.proc is not None
        log = self.root / "postgres.log"
        offset = log.stat().st_size if log.exists() else 0
        killed = len(children_of(self.proc.pid)) + 1
        signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        time.sleep(down_s)
        self.start()
        with log.open("rb") as f:
            f.seek(offset)
            after = f.read().decode(errors="replace")
        recovered = any(marker in after for marker in CRASH_RECOVERY_MARKERS)
        if not recovered:
            raise RuntimeError(f"the PostgreSQL crash was not followed by crash recovery:\n{after[-2000:]}")
        return {"killed_processes": killed, "crash_recovery": recovered}

    def terminate_backends(self) -> int:
        with self._admin() as conn:
            row = conn.execute(TERMINATE, (DATABASE,)).fetchone()
        return int(cast(int, row[0])) if row else 0

    def close(self) -> None:
        if self.proc is not None:
            end(self.proc, signal.SIGINT, timeout=30)  # a fast shutdown
            self.proc = None


class SharedDatabase:
    """A database of this run alone on the shared server; dropped at :meth:`close`."""

    mode = "shared-server-database"

    def __init__(self, admin_url: str = SHARED_URL) -> None:
        parsed = make_url(admin_url)
        self.conninfo = {
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": parsed.username or "postgres",
            "password": parsed.password,
            "dbname": parsed.database or "postgres",
        }
        self.name = f"memtasks_chaos_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = parsed.set(drivername="postgresql+psycopg", database=self.name).render_as_string(
            hide_password=False
        )

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        args = {k: v for k, v in self.conninfo.items() if v is not None}
        return psycopg.connect(**args, autocommit=True, connect_timeout=5)  # type: ignore[arg-type]

    def terminate_backends(self) -> int:
        with self._admin() as conn:
            row = conn.execute(TERMINATE, (self.name,)).fetchone()
        return int(cast(int, row[0])) if row else 0

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error), self._admin() as conn:
            conn.execute(TERMINATE, (self.name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
