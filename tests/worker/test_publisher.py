"""Adaptive batching: which messages a publish of due memory-tree jobs becomes (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memtasks.config import Settings, load_settings
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Followup
from memtasks.worker import names
from memtasks.worker.publisher import CeleryPublisher

pytestmark = pytest.mark.unit


class RecordingApp:
    """Records ``send_task`` calls instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    @contextmanager
    def producer_or_acquire(self) -> Iterator[object]:
        yield object()

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


def publish(settings: Settings, jobs: list[Followup]) -> list[dict[str, Any]]:
    app = RecordingApp()
    CeleryPublisher(app, settings).mem_tree(jobs)  # type: ignore[arg-type]
    return app.sent


def extracts(n: int) -> list[Followup]:
    return [Followup(f"job:{i}", JobKind.EXTRACT_CHUNK.value) for i in range(n)]


def test_the_default_is_adaptive() -> None:
    settings = load_settings()
    assert settings.drain_batch == 500 and settings.drain_threshold == 20


def test_a_few_due_jobs_travel_one_message_each() -> None:
    sent = publish(load_settings(), extracts(19))
    assert [m["name"] for m in sent] == [names.MEM_TREE_RUN] * 19
    assert [m["args"] for m in sent] == [[f"job:{i}"] for i in range(19)]
    assert {m["queue"] for m in sent} == {names.BULK}


def test_a_burst_travels_as_drain_messages_sharing_the_jobs_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = publish(load_settings(), extracts(1_200))
    assert [m["name"] for m in sent] == [names.MEM_TREE_DRAIN] * 3, "1,200 jobs, 500 per drain at most"
    assert [m["kwargs"]["limit"] for m in sent] == [400, 400, 400]
    assert {tuple(m["kwargs"]["kinds"]) for m in sent} == {
        ("extract_chunk", "reembed_backfill", "seal_document")
    }
    assert {m["queue"] for m in sent} == {names.BULK}


def test_the_threshold_counts_per_queue() -> None:
    seals = [Followup(f"seal:{i}", JobKind.SEAL.value) for i in range(5)]
    sent = publish(load_settings(), extracts(30) + seals)
    by_name = {(m["name"], m["queue"]) for m in sent}
    assert by_name == {(names.MEM_TREE_DRAIN, names.BULK), (names.MEM_TREE_RUN, names.CRITICAL)}
    assert sum(m["name"] == names.MEM_TREE_RUN for m in sent) == 5


def test_drain_batch_zero_always_sends_one_message_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_DRAIN_BATCH", "0")
    sent = publish(load_settings(), extracts(1_000))
    assert len(sent) == 1_000 and {m["name"] for m in sent} == {names.MEM_TREE_RUN}


def test_threshold_one_always_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_DRAIN_THRESHOLD", "1")
    monkeypatch.setenv("MEMTASKS_DRAIN_BATCH", "10")
    sent = publish(load_settings(), extracts(25))
    assert [m["kwargs"]["limit"] for m in sent] == [9, 9, 9]


def test_llm_bound_jobs_keep_one_message_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_TREE_USES_LLM", "true")
    seals = [Followup(f"seal:{i}", JobKind.SEAL.value) for i in range(50)]
    sent = publish(load_settings(), seals)
    assert {(m["name"], m["queue"]) for m in sent} == {(names.MEM_TREE_RUN, names.LLM)}
    assert len(sent) == 50
