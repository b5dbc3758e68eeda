"""The soak, reduced: 45 s of steady mixed load with a pool process killed and Redis
restarted, sampled every second; the bounds of ``bench.soak.verdict`` hold.

``make soak`` runs it for 30 minutes (bench/results/soak.json). A minute shows the harness
works and nothing grows fast; slow leaks are what the long run is for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.redis_server import find_redis_server
from bench.soak.run import SoakSettings, run

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_load_and_faults_grow_nothing(tmp_path: Path) -> None:
    if find_redis_server() is None:
        pytest.fail("the soak needs redis-server (apt-get install redis-server; `make test` installs it)")

    figures = run(
        SoakSettings(
            minutes=0.75,
            sample_s=1.0,
            fault_every_s=15.0,
            retention_s=15.0,
            warmup_fraction=0.5,
            autovacuum_naptime_s=1.0,
        ),
        tmp_path,
    )

    assert figures["samples"] >= 30
    assert {f["fault"] for f in figures["faults"]} == {"kill_child", "redis_restart"}
    assert figures["enqueued"] >= 1_000
    assert set(figures["memory"]) == {"w1", "w2", "beat"}
    assert figures["ok"], figures["violations"]
