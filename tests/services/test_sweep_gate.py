"""The sweep lock: a holder that dies mid-run blocks the sweep for about two intervals, not more.

The recovery sweep runs every few seconds in a busy fleet; its lock used to live at least
30 s (and two intervals for slow sweeps: two days for the daily ones), so a worker paused or
killed while it ran ``recover`` stopped every expired lease from being taken over for 30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from memtasks.locks import redis_client
from memtasks.services.sweeps import MAX_LOCK_TTL_S, SweepGate, lock_ttl_s
from memtasks.storage.engine import get_engine
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from memtasks.locks import redis_client
from memtasks.services.sweeps import SweepGate
from memtasks.storage.engine import get_engine

def stall():
    print("holding", flush=True)
    time.sleep(600)

SweepGate(get_engine(sys.argv[1]), redis_client(sys.argv[2])).run(sys.argv[3], 1.0, stall)
"""


def test_the_lock_ttl_follows_the_interval_within_bounds() -> None:
    assert lock_ttl_s(0.3) == 2.0
    assert lock_ttl_s(1.0) == 2.0
    assert lock_ttl_s(10.0) == 20.0
    assert lock_ttl_s(86_400.0) == MAX_LOCK_TTL_S


def test_a_sweep_runs_again_soon_after_its_holder_was_killed(tmp_path: Path, redis_url: str) -> None:
    db_url = f"sqlite:///{tmp_path}/memtasks.sqlite3"
    name = f"test-{uuid.uuid4().hex[:12]}"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url, redis_url, name],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        finally:
            holder.send_signal(signal.SIGKILL)  # dies holding the lock: no release, no renewal
            holder.wait(timeout=10)
    killed = time.monotonic()
    gate = SweepGate(get_engine(db_url), redis_client(redis_url))
    assert not gate.run(name, 1.0, lambda: None).ran, "the dead holder's lock still stands"

    wait_for(lambda: gate.run(name, 1.0, lambda: None).ran, timeout=10, interval=0.1)

    assert time.monotonic() - killed <= lock_ttl_s(1.0) + 1.5
