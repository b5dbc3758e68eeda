"""The Celery app's configuration and routing (no broker needed)."""

from __future__ import annotations

import pytest

import beat_schedule
from memtasks.config import SWEEP_NAMES, load_settings
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.jobs import JobKind
from memtasks.worker import names
from memtasks.worker.app import beat_entries, create_app
from memtasks.worker.conf import publisher_app
from memtasks.worker.routing import message_priority, queue_for

pytestmark = pytest.mark.unit


def test_the_app_is_json_only_with_late_acks_and_a_few_messages_reserved() -> None:
    conf = create_app(load_settings()).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.result_accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 4
    assert conf.worker_max_memory_per_child == 512_000
    assert {q.name for q in conf.task_queues} == {*names.QUEUES, names.CELERY}


def test_a_fleet_whose_text_models_call_an_llm_reserves_one_message_unless_told() -> None:
    assert create_app(load_settings(tree_uses_llm=True)).conf.worker_prefetch_multiplier == 1
    told = load_settings(tree_uses_llm=True, worker_prefetch=3)
    assert create_app(told).conf.worker_prefetch_multiplier == 3
    assert create_app(load_settings(worker_prefetch=1)).conf.worker_prefetch_multiplier == 1
    with pytest.raises(ConfigurationError, match="MEMTASKS_WORKER_PREFETCH"):
        load_settings(worker_prefetch=0)


def test_broker_connections_that_go_silent_are_given_up_unless_told_otherwise() -> None:
    conf = create_app(load_settings()).conf
    options = conf.broker_transport_options
    assert (options["socket_timeout"], options["health_check_interval"], options["socket_keepalive"]) == (
        5.0,
        5,
        True,
    )
    assert conf.broker_heartbeat == 5
    told = create_app(load_settings(broker_socket_timeout_s=3, broker_health_check_s=4)).conf
    assert told.broker_transport_options["socket_timeout"] == 3
    assert (told.broker_transport_options["health_check_interval"], told.broker_heartbeat) == (4, 4)
    libraries = create_app(load_settings(broker_socket_timeout_s=0, broker_health_check_s=0)).conf
    assert "socket_timeout" not in libraries.broker_transport_options
    assert "health_check_interval" not in libraries.broker_transport_options
    assert libraries.broker_heartbeat == 120  # Celery's own default
    # A producer with only a broker URL gets the same liveness.
    published = publisher_app("redis://127.0.0.1:6379/0").conf.broker_transport_options
    assert (published["socket_timeout"], published["health_check_interval"]) == (5.0, 5)
    with pytest.raises(ConfigurationError, match="MEMTASKS_BROKER_SOCKET_TIMEOUT_S"):
        load_settings(broker_socket_timeout_s=-1)


def test_every_task_name_is_registered() -> None:
    app = create_app(load_settings())
    expected = {
        names.MEM_TREE_RUN,
        names.MEM_TREE_ENQUEUE,
        names.DECAY_RUN,
        names.DECAY_ENQUEUE,
        names.RECORD_RETRIEVAL_FAILURES,
        *names.SWEEPS.values(),
    }
    assert expected <= set(app.tasks)


def test_beat_has_every_sweep_on_the_maintenance_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_BEAT_INTERVALS", '{"consolidate": 5}')
    entries = beat_entries(load_settings())
    assert set(entries) == set(names.SWEEPS) == set(beat_schedule.INTERVALS_S)
    assert entries["consolidate"]["schedule"] == 5
    assert entries["recover"]["schedule"] == 60
    assert all(e["options"]["queue"] == names.MAINTENANCE for e in entries.values())
    # No expiry by the beat host's clock: a skewed beat must not send dead messages.
    assert all("expires" not in e["options"] for e in entries.values())


def test_an_unknown_sweep_interval_is_named_when_the_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_BEAT_INTERVALS", '{"consolidat": 5}')
    with pytest.raises(ConfigurationError, match=r"MEMTASKS_BEAT_INTERVALS.*unknown sweeps: 'consolidat'"):
        load_settings()


def test_the_settings_know_every_sweep() -> None:
    assert set(names.SWEEPS) == SWEEP_NAMES


def test_routing_by_kind_and_llm() -> None:
    assert queue_for(JobKind.SEAL, llm_bound=True, tree_uses_llm=False) == names.CRITICAL
    assert queue_for(JobKind.APPEND_BUFFER, llm_bound=False, tree_uses_llm=True) == names.DEFAULT
    assert queue_for(JobKind.EXTRACT_CHUNK, llm_bound=False, tree_uses_llm=False) == names.BULK
    assert queue_for(JobKind.SEAL, llm_bound=True, tree_uses_llm=True) == names.LLM


def test_message_priority_follows_each_brokers_order() -> None:
    redis_order = [
        message_priority(k, "redis://x") for k in (JobKind.SEAL, JobKind.FLUSH_STALE, JobKind.EXTRACT_CHUNK)
    ]
    amqp_order = [
        message_priority(k, "amqp://x") for k in (JobKind.SEAL, JobKind.FLUSH_STALE, JobKind.EXTRACT_CHUNK)
    ]
    assert redis_order == sorted(redis_order), "Redis consumes 0 first"
    assert amqp_order == sorted(amqp_order, reverse=True), "RabbitMQ consumes the highest first"
