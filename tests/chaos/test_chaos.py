"""The chaos suite, reduced: 1,200 jobs through a real fleet while every fault type strikes.

``make chaos`` runs the full suite (10,000 jobs, bench/results/chaos.json); this runs the
same driver smaller, writing its figures to the test's directory. Seeded: the seed is
printed on failure, and ``CHAOS_SEED=<seed>`` runs the same workload and faults again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos.run import preflight
from bench.chaos.settings import FAULT_TYPES, ROOT, ChaosSettings

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

JOBS = 1_200
ENQUEUE_S = 90  # as long as the scheduled round of faults: every fault meets jobs in flight
RUN_TIMEOUT_S = 330


def run_chaos(tmp_path: Path, seed: int) -> tuple[int, str]:
    log = tmp_path / "chaos.log"
    argv = [
        *(sys.executable, "-m", "bench.chaos", "--jobs", str(JOBS), "--duration", str(ENQUEUE_S)),
        *("--seed", str(seed), "--out", str(tmp_path / "chaos.json"), "--logs", str(tmp_path / "logs")),
        *("--pg", "private"),  # a cluster of its own, crashed with fsync on: no fault left out
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the driver tears its servers and fleet down
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = -1
    return code, log.read_text(errors="replace")


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_a_reduced_chaos_run_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    problem = preflight(ChaosSettings(pg_mode="private"))
    if problem is not None:
        pytest.fail(problem)
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))

    code, output = run_chaos(tmp_path, seed)

    replay = f"seed {seed} (CHAOS_SEED={seed} replays it; logs in {tmp_path / 'logs'})"
    assert code == 0, f"the chaos run failed with {code}, {replay}:\n{output[-8000:]}"
    figures = json.loads((tmp_path / "chaos.json").read_text())
    assert figures["jobs"] >= JOBS, replay
    assert figures["terminal"] == figures["jobs"], replay
    assert (figures["lost"], figures["double_effects"], figures["double_followups"]) == (0, 0, 0), replay
    assert figures["unplanned_failed"] == 0, replay
    assert figures["planned_failed"] >= 1, replay
    assert figures["decay_jobs"] >= 100 and figures["decay_lost"] == 0, replay
    assert figures["decay_failed"] == figures["decay_planned_failures"] >= 1, replay
    assert figures["decay_retried"] >= figures["decay_flaky"] >= 1, replay
    assert figures["faults_without_work_in_flight"] == 0, replay
    assert all(f["hit"]["running"] + f["hit"]["unacked"] > 0 for f in figures["fault_log"]), replay
    crashes = [f for f in figures["fault_log"] if f["type"] == "pg_restart"]
    assert crashes and all(f["crash_recovery"] for f in crashes), replay
    assert figures["max_recovery_raw_s"] >= figures["max_recovery_s"], replay
    assert figures["terminal_rows_changed"] == 0, replay
    assert figures["max_attempts_used"] <= figures["max_attempts"], replay
    assert figures["max_recovery_s"] <= figures["recovery_bound_s"], replay
    assert figures["recoveries"] >= 1 and figures["fenced_late_settles"] >= 1, replay
    assert figures["pg_mode"] == "private-cluster", replay
    expected = set(FAULT_TYPES)
    injected = {kind for kind, count in figures["faults"].items() if count >= 1}
    assert injected >= expected, f"fault types never injected: {sorted(expected - injected)}, {replay}"
    assert figures["ok"] and not figures["violations"], replay
