"""The network scenarios, reduced: a worker host cut off for 15 s while it holds row locks; a
host's link slow (+200 ms per round trip) for 10 s; a host's broker connections silenced.

Runs ``bench.chaos.network`` (network namespaces, veth links, relays; root is needed, and
``make test`` installs socat): nothing lost, no effect twice, the stranded jobs finished by
the healthy host before the heal, the healthy host never idle more than 2 s, the cut-off
host's late settles fenced, and the healed host at work again within 30 s, without a restart.
The slow host keeps working, slower, and loses no lease to the delay; the silenced host gives
its dead connections up and takes work again within 30 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.link_faults import SilentSettings, SlowSettings, run_silent_broker, run_slow_link
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


@pytest.mark.timeout(300)
def test_a_slow_link_slows_its_host_and_costs_no_lease(tmp_path: Path) -> None:
    problem = netns_problem()
    if problem is not None:
        pytest.fail(problem)

    figures = run_slow_link(SlowSettings(slow_s=10.0, after_s=6.0), tmp_path)

    shown = "\n".join(f"{k}: {v}" for k, v in figures.items())
    assert (figures["lost"], figures["double_effects"], figures["done_without_effect"]) == (0, 0, 0), shown
    assert figures["round_trip_ms"]["slow_link"] >= 200 > 20 > figures["round_trip_ms"]["fast_link"], shown
    assert figures["slow_jobs_done"]["a"] > 0 and figures["after_jobs_done"]["a"] > 0, shown
    slow, fast = figures["slow_median_run_ms"]["a"], figures["after_median_run_ms"]["a"]
    assert slow > 200 > fast, shown  # the delay was on host a's every round trip, then gone
    assert (figures["leases_expired"], figures["lease_lost_warnings"]) == (0, 0), shown
    assert figures["ok"], shown


@pytest.mark.timeout(300)
def test_a_silent_broker_connection_is_given_up_and_its_host_works_again(tmp_path: Path) -> None:
    problem = netns_problem()
    if problem is not None:
        pytest.fail(problem)

    figures = run_silent_broker(SilentSettings(watch_s=40.0), tmp_path)

    shown = "\n".join(f"{k}: {v}" for k, v in figures.items())
    assert (figures["lost"], figures["double_effects"], figures["done_without_effect"]) == (0, 0, 0), shown
    assert figures["silenced_host_back_s"] is not None and figures["silenced_host_back_s"] <= 30, shown
    assert figures["stale_connection_dropped"] >= 1, shown
    assert figures["healthy_jobs_while_watched"] > 0, shown
    assert figures["ok"], shown
