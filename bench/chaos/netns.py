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
With ``spoilable=True`` it is :mod:`bench.chaos.link_relay` instead, which can slow the link
(:meth:`Relay.slow` at start, :meth:`Relay.unslow`) or silence the connections open at an
instant (:meth:`Relay.silence`).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
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
    ``127.0.0.1:target_port``; with ``spoilable``, :mod:`bench.chaos.link_relay`, whose link
    starts ``delay_ms`` slow each way."""

    def __init__(
        self,
        root: Path,
        name: str,
        listen_host: str,
        target_port: int,
        *,
        spoilable: bool = False,
        delay_ms: float = 0.0,
    ) -> None:
        self.root = root
        self.name = name
        self.listen_host = listen_host
        self.port = free_port()
        self.target_port = target_port
        self.spoilable = spoilable
        self.delay_ms = delay_ms
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.spoilable:
            argv = [
                sys.executable,
                "-m",
                "bench.chaos.link_relay",
                "--listen",
                f"{self.listen_host}:{self.port}",
                "--target",
                str(self.target_port),
                "--delay-ms",
                str(self.delay_ms),
            ]
        else:
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

    def silence(self) -> None:
        """Every connection open now stops answering, without closing (spoilable only)."""
        self._signal(signal.SIGUSR1)

    def unslow(self) -> None:
        """The link's delay back to 0 (spoilable only)."""
        self._signal(signal.SIGUSR2)

    def _signal(self, sig: signal.Signals) -> None:
        if not self.spoilable or self.proc is None:
            raise RuntimeError(f"relay {self.name} cannot be spoiled")
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, timeout=5)
            self.proc = None


def unique_tag() -> str:
    """A short tag for one run's namespaces (a crashed run's leftovers never clash)."""
    return uuid.uuid4().hex[:4]


__all__ = ["Host", "Relay", "netns_problem", "unique_tag"]
