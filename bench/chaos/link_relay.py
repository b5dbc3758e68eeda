"""A relay that can make a link slow or a connection silent (``python -m bench.chaos.link_relay``).

``socat`` relays a host's connections as they are; this one listens on ``--listen HOST:PORT``,
forwards every connection to ``127.0.0.1:--target`` and can spoil the link in the two ways a
real network does that the kernel here cannot imitate (it has no ``netem``):

- **slow**: every chunk of bytes is held ``--delay-ms`` in each direction before it is passed on
  (100 ms each way: +200 ms per round trip), in order; ``SIGUSR2`` sets the delay back to 0;
- **silent**: on ``SIGUSR1`` every connection open at that instant stops answering without
  closing: bytes from either side are read and dropped, nothing is written, nothing is closed.
  The peers' kernels keep acknowledging (the relay's socket reads), so TCP keepalives and
  ``tcp_user_timeout`` see a healthy connection: only an application's own timeouts notice —
  the case of a NAT or proxy entry that died, or a server that hangs. Connections opened after
  the signal work.

It prints one line per event to its log (the scenario reads none of it; it is for a human).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time


class Link:
    """The relay's state: the delay, and the connections the last ``SIGUSR1`` silenced."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.open: set[Pipe] = set()
        self.silenced = 0

    def silence(self) -> None:
        for pipe in self.open:
            pipe.silent = True
        self.silenced += len(self.open)
        print(f"{time.time():.3f} silenced {len(self.open)} connections", flush=True)

    def unslow(self) -> None:
        self.delay_s = 0.0
        print(f"{time.time():.3f} delay off", flush=True)


class Pipe:
    """One relayed connection: two pumps, each a reader and a sender that keeps the order."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.silent = False

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.silent:
                    continue
                await queue.put((time.monotonic() + self.link.delay_s, data))
        except (ConnectionError, OSError):
            pass
        while self.silent:  # never close a silenced connection: that would be an answer
            await asyncio.sleep(3600)
        await queue.put((0.0, b""))
        await sender

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.silent:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.silent:
                with contextlib.suppress(ConnectionError, OSError):
                    writer.close()


async def serve(listen_host: str, listen_port: int, target_port: int, link: Link) -> None:
    async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        pipe = Pipe(link)
        link.open.add(pipe)
        try:
            await asyncio.gather(pipe.pump(client_r, server_w), pipe.pump(server_r, client_w))
        finally:
            link.open.discard(pipe)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, link.silence)
    loop.add_signal_handler(signal.SIGUSR2, link.unslow)
    server = await asyncio.start_server(accept, listen_host, listen_port, reuse_address=True)
    print(f"{time.time():.3f} relaying {listen_host}:{listen_port} -> 127.0.0.1:{target_port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos.link_relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    parser.add_argument("--target", type=int, required=True, help="port on 127.0.0.1 to forward to")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="hold each chunk this long, each way")
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port), args.target, Link(args.delay_ms / 1000)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
