"""Settings come from MEMTASKS_* variables; bad values say which variable is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtasks.config import load_settings
from memtasks.domain.clock import SECOND_MS
from memtasks.domain.errors import ConfigurationError
from memtasks.services.runtime import consolidation_config, open_runtime, queue_config, tree_config

pytestmark = pytest.mark.integration


def test_default_database_is_a_sqlite_file_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTASKS_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/data/memtasks.sqlite3"
    runtime = open_runtime(settings)
    assert runtime.jobs.admin.count_total() == 0
    assert (tmp_path / "data" / "memtasks.sqlite3").exists()


def test_environment_flows_into_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_LEASE_S", "12.5")
    monkeypatch.setenv("MEMTASKS_BACKOFF_BASE_S", "2")
    monkeypatch.setenv("MEMTASKS_BACKOFF_CAP_S", "8")
    monkeypatch.setenv("MEMTASKS_MAX_ATTEMPTS", "7")
    config = queue_config(load_settings())
    assert config.lease_ms == 12_500
    assert config.policy.base_ms == 2 * SECOND_MS
    assert config.policy.cap_ms == 8 * SECOND_MS
    assert config.max_attempts == 7


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MEMTASKS_LEASE_S", "-1", "MEMTASKS_LEASE_S"),
        ("MEMTASKS_MAX_ATTEMPTS", "zero", "MEMTASKS_MAX_ATTEMPTS"),
        ("MEMTASKS_SQLITE_JOURNAL_MODE", "fast", "MEMTASKS_SQLITE_JOURNAL_MODE"),
        ("MEMTASKS_BACKOFF_JITTER", "2", "MEMTASKS_BACKOFF_JITTER"),
        ("MEMTASKS_BACKOFF_CAP_S", "1", "MEMTASKS_BACKOFF_CAP_S must be ≥"),
        ("MEMTASKS_TREE_FANOUT", "1", "MEMTASKS_TREE_FANOUT"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=fragment):
        load_settings()


def test_consolidation_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_CONSOLIDATE_MIN_HOURS", "0.5")
    monkeypatch.setenv("MEMTASKS_CONSOLIDATE_MIN_SESSIONS", "2")
    monkeypatch.setenv("MEMTASKS_CONSOLIDATE_MAX_OUTCOMES_PER_SENDER", "7")
    config = consolidation_config(load_settings())
    assert config.min_hours == 0.5
    assert config.min_sessions == 2
    assert config.max_outcomes_per_sender == 7
    assert config.max_message_age_days == 30


def test_tree_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_TREE_FANOUT", "16")
    monkeypatch.setenv("MEMTASKS_TREE_STALE_AFTER_S", "2.5")
    config = tree_config(load_settings())
    assert (config.fanout, config.stale_after_ms, config.reembed_batch) == (16, 2_500, 256)
