"""The jobs of a run and the producer that enqueues them at a steady pace.

Jobs are spread over the six memory-tree kinds. A few sleep in their handler (some longer
than a heartbeat interval), a few fail their first attempt, a few fail for good as planned
(``fail_always``: unrecoverable), half of the ``extract_chunk`` jobs enqueue a follow-up.
Every job carries ``chaos_n`` and the dedupe key ``chaos:<n>``: an enqueue retried after a
database fault cannot insert a job twice. Decay jobs (``bench.chaos.decay_work``) travel in
the same paced stream.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bench.chaos.decay_work import PlannedDecay
from bench.chaos.decay_work import enqueue as enqueue_decay
from bench.chaos.settings import ChaosSettings
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.producer import Producer
from memtasks.storage.tables import mem_tree_jobs

log = logging.getLogger("bench.chaos.workload")

KINDS = tuple(JobKind)
BATCH = 100


@dataclass(frozen=True, slots=True)
class PlannedJob:
    n: int
    kind: JobKind
    payload: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        return f"chaos:{self.n}"

    @property
    def planned_failure(self) -> bool:
        return bool(self.payload.get("fail_always"))

    def new_job(self, max_attempts: int) -> NewJob:
        return NewJob(self.kind, self.payload, self.dedupe_key, max_attempts=max_attempts)


def kind_payload(kind: JobKind, n: int) -> dict[str, Any]:
    """A payload that is valid for ``kind`` (the producer checks it)."""
    payloads: dict[JobKind, dict[str, Any]] = {
        JobKind.EXTRACT_CHUNK: {"chunk_id": f"chunk-{n}"},
        JobKind.APPEND_BUFFER: {"tree_id": "chaos", "level": 0, "item_id": f"item-{n}"},
        JobKind.SEAL: {"tree_id": f"tree-{n}", "level": 0},
        JobKind.FLUSH_STALE: {},
        JobKind.REEMBED_BACKFILL: {"model": "chaos"},
        JobKind.SEAL_DOCUMENT: {"tree_id": "chaos", "doc_id": f"doc-{n}"},
    }
    return payloads[kind] | {"chaos_n": n}


def plan(settings: ChaosSettings, rng: random.Random) -> list[PlannedJob]:
    jobs: list[PlannedJob] = []
    for n in range(settings.jobs):
        kind = KINDS[n % len(KINDS)] if n < len(KINDS) else rng.choice(KINDS)
        payload = kind_payload(kind, n)
        if rng.random() < settings.slow_fraction:
            payload["slow_ms"] = rng.randint(300, 2_500)
        if rng.random() < settings.fail_first_fraction:
            payload["fail_first"] = True
        if kind is JobKind.EXTRACT_CHUNK and rng.random() < settings.followup_fraction:
            payload["followup"] = True
        elif rng.random() < settings.fail_always_fraction:
            payload["fail_always"] = True
        if n == len(KINDS):  # at least one planned failure
            payload.pop("followup", None)
            payload["fail_always"] = True
        jobs.append(PlannedJob(n, kind, payload))
    return jobs


def interleave(jobs: Sequence[PlannedJob], decay: Sequence[PlannedDecay]) -> list[PlannedJob | PlannedDecay]:
    """The decay jobs spread evenly through the memory-tree jobs: one paced stream."""
    items: list[PlannedJob | PlannedDecay] = list(jobs)
    step = max(1, len(jobs) // max(1, len(decay)))
    for i, job in enumerate(decay):
        items.insert(min(len(items), (i + 1) * (step + 1) - 1), job)
    return items


def bait(n: int, slow_ms: int) -> PlannedJob:
    """A ``seal`` job (the most urgent kind) whose first attempt sleeps ``slow_ms``: the
    fault driver waits for a worker to start it, then kills or pauses that worker."""
    payload = kind_payload(JobKind.SEAL, n) | {"slow_ms": slow_ms, "slow_attempts": 1, "bait": True}
    return PlannedJob(n, JobKind.SEAL, payload)


class Enqueuer:
    """Enqueues through :class:`memtasks.producer.Producer` (row, then message), retrying
    while the database is down; after a failure it enqueues only what is not there yet."""

    def __init__(self, producer: Producer, max_attempts: int) -> None:
        self.producer = producer
        self.max_attempts = max_attempts
        self.retries = 0

    def enqueue(self, items: Sequence[PlannedJob | PlannedDecay], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        decay = [item for item in items if isinstance(item, PlannedDecay)]
        while decay:
            try:
                enqueue_decay(self.producer.runtime.decay, decay)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                log.warning("enqueue of %d decay jobs failed (%s); retrying", len(decay), exc)
                time.sleep(0.5)
        pending = [item for item in items if isinstance(item, PlannedJob)]
        while pending:
            try:
                self.producer.enqueue_many([job.new_job(self.max_attempts) for job in pending])
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                log.warning("enqueue of %d jobs failed (%s); retrying", len(pending), exc)
                time.sleep(0.5)
                pending = self._missing(pending)

    def _missing(self, jobs: Sequence[PlannedJob]) -> list[PlannedJob]:
        keys = [job.dedupe_key for job in jobs]
        while True:
            try:
                with self.producer.runtime.engine.connect() as conn:
                    present = set(
                        conn.execute(
                            select(mem_tree_jobs.c.dedupe_key).where(mem_tree_jobs.c.dedupe_key.in_(keys))
                        ).scalars()
                    )
                return [job for job in jobs if job.dedupe_key not in present]
            except Exception as exc:
                log.warning("cannot look up enqueued jobs yet (%s)", exc)
                time.sleep(0.5)


class PacedProducer:
    """Enqueues ``jobs`` evenly over ``duration_s``, in batches, from a thread of its own."""

    def __init__(
        self, jobs: Sequence[PlannedJob | PlannedDecay], duration_s: float, enqueuer: Enqueuer
    ) -> None:
        self.jobs = jobs
        self.duration_s = duration_s
        self.enqueuer = enqueuer
        self.sent = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        started = time.monotonic()
        rate = len(self.jobs) / max(self.duration_s, 0.001)
        try:
            while self.sent < len(self.jobs) and not self._stop.is_set():
                due = min(len(self.jobs), int((time.monotonic() - started) * rate) + 1)
                while self.sent < due and not self._stop.is_set():
                    batch = self.jobs[self.sent : min(due, self.sent + BATCH)]
                    self.enqueuer.enqueue(batch)
                    self.sent += len(batch)
                self._stop.wait(0.05)
        except BaseException as exc:
            self.error = exc
            log.exception("the producer stopped")
        finally:
            self.finished.set()
