"""The partition scenario, reduced: a worker host cut off for 15 s while it holds row locks.

Runs ``bench.chaos.network`` (network namespaces, veth links, relays; root is needed, and
``make test`` installs socat): nothing lost, no effect twice, the stranded jobs finished by
the healthy host before the heal, the healthy host never idle more than 2 s, the cut-off
host's late settles fenced, and the healed host at work again within 30 s, without a restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.netns import netns_problem
from bench.chaos.network import PartitionSettings, run_partition

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_a_cut_off_host_holds_nobody_up_and_comes_back(tmp_path: Path) -> None:
    problem = netns_problem()
    if problem is not None:
        pytest.fail(problem)

    figures = run_partition(PartitionSettings(cut_s=15.0), tmp_path)

    shown = "\n".join(f"{k}: {v}" for k, v in figures.items())
    assert (figures["lost"], figures["double_effects"], figures["done_without_effect"]) == (0, 0, 0), shown
    assert figures["stranded_finished_by"] == ["host-b"], shown
    assert figures["stranded_done_before_heal"], shown
    assert figures["healthy_jobs_during_cut"] > 0, shown
    assert figures["healthy_longest_idle_s"] <= 2.0, shown
    assert figures["late_settles_fenced"] >= 1, shown
    assert figures["stranded_effects_from_host_b"], shown
    assert figures["healed_host_back_s"] is not None and figures["healed_host_back_s"] <= 30, shown
    for outcomes in figures["stranded_history"].values():
        assert outcomes[0][0] == "lease_expired" and outcomes[0][1].startswith("host-a:"), shown
        assert outcomes[-1][0] == "done" and outcomes[-1][1].startswith("host-b:"), shown
    assert figures["ok"], shown
