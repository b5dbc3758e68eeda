"""One clock, the database's: hosts whose wall clocks are five minutes apart agree on leases.

Real ``celery worker`` processes, a ``celery beat`` and a producer, each under libfaketime
(Debian's ``faketime``): one worker five minutes ahead, one five minutes behind, the beat
five minutes behind, the producer five minutes ahead; PostgreSQL and Redis keep the true
time. Every job's handler outlives its lease (heartbeats must keep it) — were a lease
written or judged by a host's clock, the worker behind would write leases already expired
and the sweep would take its jobs over while they run. Shown: every job run exactly once,
none recovered, none delayed by the producer's clock, and the beat's sweeps all ran.
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, text

from memtasks.storage.engine import get_engine
from memtasks.storage.tables import mem_tree_jobs as t
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

JOBS = 8
SLEEP_S = 8.0  # longer than the lease: only heartbeats keep it
LEASE_S = 5
SWEEPS = {"recover": 1.0, "dispatch_due": 1.0}


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        pytest.fail(
            "libfaketime is not installed: the clock-skew test needs it "
            "(Debian: apt-get install faketime; `make test` installs it)"
        )
    return found[0]


FAKETIME_SITE = Path(__file__).with_name("faketime_site")


def skewed(env: dict[str, str], offset: str) -> dict[str, str]:
    """``env`` for a process whose wall clock is ``offset`` off. Its monotonic clock stays
    true (libfaketime's faked one hangs every timed wait on a lock: the lease keeper's), and
    ``faketime_site/sitecustomize.py`` makes ``time.sleep`` wait on an event, since
    libfaketime then answers Python's ``clock_nanosleep`` with EINVAL."""
    return env | {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": f"{FAKETIME_SITE}:{env['PYTHONPATH']}",
    }


PRODUCER = textwrap.dedent(
    """
    import time
    from memtasks.config import load_settings
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.producer import Producer
    print("producer clock", time.time(), flush=True)
    producer = Producer(load_settings())
    for i in range(%d):
        producer.enqueue(NewJob(JobKind.REEMBED_BACKFILL, {"probe": f"skew-{i}", "sleep_s": %s, "sleep_always": True}))
    producer.close()
    """
)


def test_workers_beat_and_producer_five_minutes_apart_run_every_job_once(
    pg_schema: str, fleet: Fleet, broker_url: str, lock_url: str, probes: redis.Redis
) -> None:
    base = fleet_env(
        database_url=pg_schema, broker_url=broker_url, lock_redis_url=lock_url, beat=SWEEPS, lease_s=LEASE_S
    )
    get_engine(pg_schema)  # the schema, migrated
    fleet.env = skewed(base, "+5m")
    fleet.worker("ahead")
    fleet.env = skewed(base, "-5m")
    fleet.worker("behind")
    fleet.beat()

    produced = subprocess.run(
        [sys.executable, "-c", PRODUCER % (JOBS, SLEEP_S)],
        cwd=ROOT,
        env=skewed(base, "+5m"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr[-3000:]

    engine = get_engine(pg_schema)

    def rows() -> list[dict[str, object]]:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t)).mappings()]

    wait_until(lambda: sum(r["status"] == "done" for r in rows()) == JOBS, 120, "every job done", fleet)
    done = rows()
    runs = {f"skew-{i}": int(probes.get(f"probe:skew-{i}:runs") or 0) for i in range(JOBS)}
    assert set(runs.values()) == {1}, f"every job ran exactly once: {runs}"
    assert {r["attempts"] for r in done} == {1}
    histories = [json.loads(str(r["attempt_history"])) for r in done]
    assert all([e["outcome"] for e in h] == ["done"] for h in histories), "none was recovered"
    workers = {str(r["claimed_by"]) for r in done}
    assert len(workers) >= 2, f"both skewed workers ran jobs: {workers}"
    # The producer's clock, five minutes ahead, delayed nothing: each job was due when it was
    # stored (the database's now) and started within seconds of it.
    waits = [int(r["started_at_ms"]) - int(r["created_at_ms"]) for r in done]  # type: ignore[call-overload]
    assert all(r["available_at_ms"] == r["created_at_ms"] for r in done)
    assert max(waits) < 60_000, f"jobs waited {max(waits)} ms to start"
    # Each job took at least its handler's sleep, and its lease outlived it only by heartbeats.
    assert all(int(r["completed_at_ms"]) - int(r["started_at_ms"]) >= SLEEP_S * 1000 for r in done)  # type: ignore[call-overload]

    # The beat, five minutes behind, had its sweeps run: their slots follow the database's clock.
    with engine.connect() as conn:
        sweeps = {
            row.name: row
            for row in conn.execute(
                text("SELECT name, outcome, finished_at_ms, last_slot, interval_ms FROM sweeps")
            )
        }
        now_ms = int(
            conn.execute(text("SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)")).scalar_one()
        )
    for name in SWEEPS:
        assert name in sweeps, f"the {name} sweep never ran"
        assert sweeps[name].outcome == "ok", sweeps[name]
        assert now_ms - int(sweeps[name].finished_at_ms) < 30_000, f"{name} stopped running"
