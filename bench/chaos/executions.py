"""Reading the execution logs the handlers write (``exec-<pid>.jsonl``, one line per run)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Execution:
    job: str
    n: int | None
    kind: str
    attempt: int
    token: str
    claimed_at: int
    locked_until: int
    pid: int
    at: int
    slow_ms: int

    @property
    def lease_ms(self) -> int:
        return self.locked_until - self.claimed_at


class ExecLog:
    """Every execution recorded in ``root`` so far; re-reads only what was appended."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._offsets: dict[Path, int] = {}
        self.records: list[Execution] = []

    def refresh(self) -> list[Execution]:
        """Read the lines appended since the last call; returns them."""
        new: list[Execution] = []
        for path in sorted(self.root.glob("exec-*.jsonl")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            self._offsets[path] = offset + len(complete)
            new.extend(_parse(line) for line in complete.split(b"\n") if line)
        self.records.extend(new)
        return new

    def __iter__(self) -> Iterator[Execution]:
        return iter(self.records)

    def by_n(self, n: int) -> list[Execution]:
        return [e for e in self.records if e.n == n]


def _parse(line: bytes) -> Execution:
    d = json.loads(line)
    return Execution(
        job=d["job"],
        n=d.get("n"),
        kind=d["kind"],
        attempt=int(d["attempt"]),
        token=d["token"],
        claimed_at=int(d["claimed_at"]),
        locked_until=int(d["locked_until"]),
        pid=int(d["pid"]),
        at=int(d["at"]),
        slow_ms=int(d.get("slow_ms", 0)),
    )
