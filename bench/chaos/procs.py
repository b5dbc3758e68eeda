"""Process helpers: start a child that dies with the run, find free ports and pool children,
wait on a condition with a deadline.

Every child is started in a session of its own (so a signal can reach its whole process
group) and, where ``setpriv`` exists, with a parent-death signal: if the run itself is
killed, its servers and workers go with it. The parent-death signal fires when the *thread*
that started the child ends, so children are started from the main thread only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench.chaos.settings import ROOT


class Deadline(AssertionError):
    """A condition the run waits for did not hold in time."""


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it holds; :class:`Deadline` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except Deadline:
            raise
        except Exception as exc:  # a server that is coming back: look again
            last_error = exc
        if time.monotonic() > deadline:
            why = f" (last error: {last_error})" if last_error is not None else ""
            raise Deadline(f"{what}: not within {timeout:.0f} s{why}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, appending its output to ``log``; as ``user`` if given."""
    prefix: list[str] = []
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        prefix = [setpriv, "--pdeathsig", "KILL"]
        if user is not None:
            prefix += ["--reuid", user, "--regid", user, "--init-groups"]
        prefix.append("--")
    elif user is not None:
        prefix = ["runuser", "-u", user, "--"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*prefix, *argv],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def end(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> None:
    """Send ``sig`` to the process, wait, then kill what is left of its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    signal_group(proc, signal.SIGCONT)
    signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from ``/proc``)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def is_stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "T"
