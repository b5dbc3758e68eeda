"""The benchmark harness itself: its verdicts and its failures (no peer installed needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import run as bench_run
from bench.harness.report import Figure, save
from bench.harness.stats import Spread, at_least, at_most, ratios
from bench.harness.systems import Run, SystemFailed, peer_run

pytestmark = pytest.mark.unit


def test_met_needs_every_round_on_the_targets_side() -> None:
    inside = Figure("x", "×", {"a": [0.9, 1.05, 1.2], "b": [1.0, 1.0, 1.0]}, ("a", "b"), at_least(1.0))
    assert inside.ratio() == Spread(1.05, 0.9, 1.2, 3)
    assert inside.met() is False, (
        "a median above the target with a round below it is a margin inside the spread"
    )
    clear = Figure("x", "×", {"a": [1.2, 1.3, 1.4], "b": [1.0, 1.0, 1.0]}, ("a", "b"), at_least(1.0))
    assert clear.met() is True
    assert at_most(1.5).met(Spread.of([1.1, 1.4, 1.6])) is False
    assert at_most(1.5).met(Spread.of([1.1, 1.4, 1.5])) is True


def test_ratios_are_taken_round_by_round() -> None:
    assert ratios([10.0, 30.0], [5.0, 10.0]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="2 rounds against 1"):
        ratios([1.0, 2.0], [1.0])
    spread = Spread.of(ratios([1.0, 2.0], [0.0, 1.0]))
    assert (spread.median, spread.rounds) == (2.0, 1), "a round with nothing measured is left out"
    nothing = Spread.of([math.nan])
    assert nothing.rounds == 0 and at_least(0.0).met(nothing) is False


def test_a_peer_that_cannot_start_names_itself(tmp_path: Path) -> None:
    with pytest.raises(SystemFailed, match=r"pgqueuer \(batch 10\): no interpreter at .*setup\.sh"):
        peer_run("pgqueuer", 10, "noop", python=tmp_path / "missing-python")
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ImportError: no module named procrastinate' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SystemFailed, match=r"procrastinate: exited with 1: ImportError"):
        peer_run("procrastinate", 10, "noop", python=broken)


def test_a_run_where_a_system_fails_exits_2_and_leaves_latest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "latest.json").write_text("the previous run")

    def failing() -> Run:
        raise SystemFailed("procrastinate", "exited with 1: could not connect")

    steps = [
        bench_run.Step("bare per-job noop", lambda: Run(drain=1000.0)),
        bench_run.Step("procrastinate noop", failing),
    ]
    monkeypatch.setattr(bench_run, "plan", lambda *args: steps)
    monkeypatch.setattr(bench_run, "reset_databases", lambda: None)
    assert bench_run.main(["--quick", "--results", str(tmp_path)]) == 2
    assert (tmp_path / "latest.json").read_text() == "the previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json"], "nothing else was written"


def test_a_full_save_writes_every_report_and_a_partial_one_only_its_own(tmp_path: Path) -> None:
    figure = Figure(
        "drain",
        "jobs/s",
        {"memtasks": [10.0, 12.0, 11.0], "peer": [9.0, 9.5, 9.2]},
        ("memtasks", "peer"),
        at_least(1.0),
    )
    meta = {
        "at": "20260101T000000Z",
        "quick": True,
        "cpus": 2,
        "rounds": 3,
        "jobs": 10,
        "processes": 2,
        "notes": {"n": "note"},
    }
    save(tmp_path, [figure], meta, partial=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial-20260101T000000Z.json"]
    save(tmp_path, [figure], meta, partial=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"latest.json", "latest.md", "readme_table.md", "20260101T000000Z.json"} <= names
    table = (tmp_path / "latest.md").read_text()
    assert "| drain | memtasks | 11 (10–12) | jobs/s | 1.20× (1.11–1.26) | ≥ 1 | yes |" in table
