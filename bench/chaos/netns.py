"""Simulated worker hosts: Linux network namespaces joined to this one by veth pairs, and
relays that let them reach servers that listen on loopback only.

A :class:`Host` is a namespace ``mt<tag><n>`` with one veth pair: ``10.77.<n>.1`` on this side,
``10.77.<n>.2`` inside. Processes started with :meth:`Host.command` run inside it. Cutting a
host takes this side of its link down: its packets go nowhere and nothing is closed — the
host's processes and the servers' sessions both believe the other is still there, as with a
switch that died. Healing brings the link back up.

A :class:`Relay` is ``socat`` listening on a host's link address and forwarding to a server on
loopback; the servers see the relay, never the host, which is how a host behind a proxy or a
NAT looks to them: a cut host's sessions stay open on the server until something ends them.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from pathlib import Path

from bench.chaos.procs import end, free_port, spawn, wait_until


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def netns_problem() -> str | None:
    """Why this machine cannot simulate hosts, or None."""
    if shutil.which("ip") is None:
        return "the `ip` command is missing (Debian: apt-get install iproute2)"
    if shutil.which("socat") is None:
        return "socat is missing (Debian: apt-get install socat)"
    name = f"mtchk{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        return f"network namespaces cannot be made here (root is needed): {detail}"
    _ip("netns", "del", name)
    return None


class Host:
    """One simulated host: a namespace and its link to this one."""

    def __init__(self, tag: str, n: int) -> None:
        self.name = f"mt{tag}{n}"
        self.outer = f"{self.name}o"[:15]
        self.inner = f"{self.name}i"[:15]
        self.gateway = f"10.77.{n}.1"
        self.address = f"10.77.{n}.2"
        self.up = False

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _ip("link", "set", self.inner, "netns", self.name)
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.inner)
        _ip("-n", self.name, "link", "set", self.inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        self.up = True

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        _ip("link", "set", self.outer, "down")
        self.up = False

    def heal(self) -> None:
        _ip("link", "set", self.outer, "up")
        self.up = True

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.outer)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", self.name)


class Relay:
    """``socat`` on ``listen_host`` (a port of its own) forwarding every connection to
    ``127.0.0.1:target_port``."""

    def __init__(self, root: Path, name: str, listen_host: str, target_port: int) -> None:
        self.root = root
        self.name = name
        self.listen_host = listen_host
        self.port = free_port()
        self.target_port = target_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            "socat",
            f"TCP-LISTEN:{self.port},bind={self.listen_host},fork,reuseaddr",
            f"TCP:127.0.0.1:{self.target_port}",
        ]
        self.proc = spawn(argv, log=self.root / f"relay-{self.name}.log")
        wait_until(self._listening, 20, f"relay {self.name} on {self.listen_host}:{self.port}")

    def _listening(self) -> bool:
        import socket

        with contextlib.suppress(OSError), socket.create_connection((self.listen_host, self.port), timeout=1):
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, timeout=5)
            self.proc = None


def unique_tag() -> str:
    """A short tag for one run's namespaces (a crashed run's leftovers never clash)."""
    return uuid.uuid4().hex[:4]


__all__ = ["Host", "Relay", "netns_problem", "unique_tag"]
