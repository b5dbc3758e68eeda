"""Settings come from MEMTASKS_* variables; bad values say which variable is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from memtasks import config
from memtasks.config import load_settings
from memtasks.domain.clock import SECOND_MS
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.queues import QUEUES
from memtasks.services.runtime import consolidation_config, open_runtime, queue_config, tree_config
from memtasks.worker import names

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


def test_the_fleet_settings_have_their_defaults() -> None:
    settings = load_settings()
    assert settings.worker_queues == "critical,default,bulk,llm,maintenance"
    assert settings.worker_queues == ",".join(QUEUES)
    assert settings.worker_concurrency is None
    assert (settings.metrics_port, settings.metrics_address) == (9808, "127.0.0.1")
    assert settings.flower_port == 5555
    assert settings.flower_allow_unauthenticated is False
    assert settings.operator is None


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("MEMTASKS_WORKER_QUEUES", "critical, default", "worker_queues", "critical,default"),
        ("MEMTASKS_WORKER_QUEUES", "maintenance", "worker_queues", "maintenance"),
        ("MEMTASKS_WORKER_CONCURRENCY", "1000", "worker_concurrency", 1000),
        ("MEMTASKS_METRICS_PORT", "1", "metrics_port", 1),
        ("MEMTASKS_METRICS_ADDRESS", "0.0.0.0", "metrics_address", "0.0.0.0"),
        ("MEMTASKS_METRICS_ADDRESS", "[::]", "metrics_address", "::"),
        (
            "MEMTASKS_METRICS_ADDRESS",
            "metrics.example.internal",
            "metrics_address",
            "metrics.example.internal",
        ),
        ("MEMTASKS_FLOWER_PORT", "65535", "flower_port", 65535),
        ("MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED", "true", "flower_allow_unauthenticated", True),
        ("MEMTASKS_OPERATOR", "ops@example.com", "operator", "ops@example.com"),
    ],
)
def test_the_fleet_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), field) == expected


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        (
            "MEMTASKS_WORKER_QUEUES",
            "critical,urgent",
            "each one of critical, default, bulk, llm, maintenance",
        ),
        ("MEMTASKS_WORKER_QUEUES", "", "each one of critical, default, bulk, llm, maintenance"),
        ("MEMTASKS_WORKER_QUEUES", "bulk,,llm", "each one of critical, default, bulk, llm, maintenance"),
        ("MEMTASKS_WORKER_QUEUES", "bulk,bulk", "names bulk twice"),
        ("MEMTASKS_WORKER_CONCURRENCY", "0", "valid: 1 to 1000"),
        ("MEMTASKS_WORKER_CONCURRENCY", "1001", "valid: 1 to 1000"),
        ("MEMTASKS_METRICS_PORT", "0", "valid: 1 to 65535"),
        ("MEMTASKS_METRICS_PORT", "http", "valid: 1 to 65535"),
        ("MEMTASKS_FLOWER_PORT", "65536", "valid: 1 to 65535"),
        ("MEMTASKS_METRICS_ADDRESS", "", "neither an IP address nor a host name"),
        ("MEMTASKS_METRICS_ADDRESS", "0.0.0.0:9808", "neither an IP address nor a host name"),
        ("MEMTASKS_METRICS_ADDRESS", "-bad-.example", "neither an IP address nor a host name"),
        ("MEMTASKS_OPERATOR", "   ", "a non-blank name of at most 128 characters"),
        ("MEMTASKS_OPERATOR", "o" * 129, "a non-blank name of at most 128 characters"),
        ("MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED", "perhaps", "valid boolean"),
    ],
)
def test_a_bad_fleet_setting_names_the_variable_and_the_valid_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, valid: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"invalid settings: {name}: ")
    assert valid in message
    assert "\n" not in message


def test_the_queue_setting_follows_the_queue_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads memtasks.domain.queues.QUEUES (worker.names re-exports it): a queue added
    there is accepted without touching the settings."""
    assert names.QUEUES is QUEUES
    monkeypatch.setattr(config, "QUEUES", (*QUEUES, "extra"))
    monkeypatch.setenv("MEMTASKS_WORKER_QUEUES", "extra,critical")
    assert load_settings().worker_queues == "extra,critical"
