"""The remote-enqueue tasks check their input with the producer API's rules: one function
(:mod:`memtasks.services.intake`), the same error for the same bad input, nothing inserted.

Each bad input of the tables goes through the producer API (:class:`Producer`, with the
:class:`NewJob`/:class:`DecaySpec`/:class:`RetrievalFailure` a producer builds) and through what
the task does (:class:`FleetServices`), then — for the mem-tree and decay tables — through a live
worker by task name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from memtasks.config import load_settings
from memtasks.domain.decay import DecaySpec
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.producer import CelerySink, Producer
from memtasks.services import intake
from memtasks.services.fleet import FleetServices
from memtasks.services.mem_tree import Followup
from memtasks.services.publishing import DecayMessage
from memtasks.services.runtime import Runtime, open_runtime
from memtasks.storage.engine import get_engine
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.tables import decay_jobs, mem_tree_jobs
from memtasks.worker import names
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import client_app, settings_from

pytestmark = [pytest.mark.security, pytest.mark.integration]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


# kind, payload, dedupe_key, max_attempts
BAD_MEM_TREE_JOBS: dict[str, tuple[Any, Any, Any, Any]] = {
    "unknown kind": ("nope", {}, None, None),
    "retired kind": ("topic_route", {}, None, None),
    "kind not a string": (123, {}, None, None),
    "payload a list": ("seal", [1, 2], None, None),
    "payload a string": ("seal", "tree", None, None),
    "field missing": ("seal", {"level": 0}, None, None),
    "level negative": ("seal", {"tree_id": "t", "level": -1}, None, None),
    "level a boolean": ("seal", {"tree_id": "t", "level": True}, None, None),
    "id too long": ("extract_chunk", {"chunk_id": "c" * 65}, None, None),
    "id with NUL": ("extract_chunk", {"chunk_id": "c\x00"}, None, None),
    "payload too large": ("extract_chunk", {"chunk_id": "c", "blob": "x" * 1_000_001}, None, None),
    "payload NaN": ("extract_chunk", {"chunk_id": "c", "score": float("nan")}, None, None),
    "payload too deep": ("extract_chunk", {"chunk_id": "c", "deep": nested(80)}, None, None),
    "dedupe key empty": ("seal", {"tree_id": "t", "level": 0}, "", None),
    "dedupe key too long": ("seal", {"tree_id": "t", "level": 0}, "k" * 513, None),
    "dedupe key a number": ("seal", {"tree_id": "t", "level": 0}, 7, None),
    "dedupe key with NUL": ("seal", {"tree_id": "t", "level": 0}, "seal:\x00", None),
    "no attempts": ("seal", {"tree_id": "t", "level": 0}, None, 0),
    "too many attempts": ("seal", {"tree_id": "t", "level": 0}, None, 101),
    "attempts a boolean": ("seal", {"tree_id": "t", "level": 0}, None, True),
    "attempts a string": ("seal", {"tree_id": "t", "level": 0}, None, "3"),
}

# kind, source_ids, created_by, method
BAD_DECAY_JOBS: dict[str, tuple[Any, Any, Any, Any]] = {
    "unknown kind": ("nope", ["mem_1"], "ops", "deterministic_concatenate"),
    "unknown method": ("candidate_compression", ["mem_1"], "ops", "gpt"),
    "sources a string": ("candidate_compression", "mem_1", "ops", "deterministic_concatenate"),
    "sources missing": ("candidate_compression", None, "ops", "deterministic_concatenate"),
    "no sources": ("candidate_compression", [], "ops", "deterministic_concatenate"),
    "too many sources": ("candidate_compression", ["mem_1"] * 1001, "ops", "deterministic_concatenate"),
    "a source not a string": ("candidate_compression", [5], "ops", "deterministic_concatenate"),
    "a source too long": ("candidate_compression", ["mem_" + "x" * 70], "ops", "deterministic_concatenate"),
    "a source of another kind": ("candidate_compression", ["ep_1"], "ops", "deterministic_concatenate"),
    "review of two": ("expired_principle_review", ["p1", "p2"], "ops", "deterministic_concatenate"),
    "review by an LLM": ("expired_principle_review", ["p1"], "ops", "llm_summary"),
    "nobody asked": ("candidate_compression", ["mem_1"], "", "deterministic_concatenate"),
    "asker missing": ("candidate_compression", ["mem_1"], None, "deterministic_concatenate"),
    "asker too long": ("candidate_compression", ["mem_1"], "o" * 129, "deterministic_concatenate"),
    "asker with NUL": ("candidate_compression", ["mem_1"], "o\x00", "deterministic_concatenate"),
}


class Recorder:
    def __init__(self) -> None:
        self.published: list[str] = []

    def mem_tree(self, jobs: Sequence[Followup]) -> None:
        self.published += [job.job_id for job in jobs]

    def decay(self, jobs: Sequence[DecayMessage]) -> None:
        self.published += [job.job_id for job in jobs]


@pytest.fixture
def runtime(db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_BROKER_URL", broker_url)
    monkeypatch.setenv("MEMTASKS_LOCK_REDIS_URL", lock_url)
    return open_runtime(load_settings())


def rows(db_url: str) -> int:
    with get_engine(db_url).connect() as conn:
        return sum(
            int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (mem_tree_jobs, decay_jobs, memory_retrieval_failures)
        )


@pytest.mark.parametrize("case", sorted(BAD_MEM_TREE_JOBS))
def test_a_bad_mem_tree_job_gets_the_same_error_both_ways(runtime: Runtime, db_url: str, case: str) -> None:
    kind, payload, dedupe_key, max_attempts = BAD_MEM_TREE_JOBS[case]
    producer = Producer(runtime.settings)
    try:
        with pytest.raises(ValidationError) as by_producer:
            producer.enqueue(NewJob(kind, payload, dedupe_key, None, max_attempts))
    finally:
        producer.close()
    recorder = Recorder()
    with pytest.raises(ValidationError) as by_task:
        FleetServices(runtime, recorder).remote.enqueue_mem_tree(
            kind, payload, dedupe_key, None, max_attempts
        )
    assert str(by_task.value) == str(by_producer.value)
    assert by_task.value.code == by_producer.value.code
    assert rows(db_url) == 0 and recorder.published == []


@pytest.mark.parametrize("case", sorted(BAD_DECAY_JOBS))
def test_a_bad_decay_job_gets_the_same_error_both_ways(runtime: Runtime, db_url: str, case: str) -> None:
    kind, source_ids, created_by, method = BAD_DECAY_JOBS[case]
    producer = Producer(runtime.settings)

    def by_the_producer() -> None:
        producer.enqueue_decay(DecaySpec(kind, source_ids, method), created_by=created_by)

    try:
        with pytest.raises(ValidationError) as by_producer:
            by_the_producer()
    finally:
        producer.close()
    recorder = Recorder()
    with pytest.raises(ValidationError) as by_task:
        FleetServices(runtime, recorder).remote.enqueue_decay(kind, source_ids, created_by, method)
    assert str(by_task.value) == str(by_producer.value)
    assert rows(db_url) == 0 and recorder.published == []


def test_delays_and_due_times_follow_one_rule(runtime: Runtime, db_url: str) -> None:
    pipeline = FleetServices(runtime, Recorder())
    for delay in (-1, float("nan"), float("inf"), "5", True, 10**12):
        with pytest.raises(ValidationError, match="delay_s must be"):
            pipeline.remote.enqueue_mem_tree("seal", {"tree_id": "t", "level": 0}, None, delay)
        with pytest.raises(ValidationError, match="delay_s must be"):
            pipeline.remote.enqueue_decay(
                "candidate_compression", ["mem_1"], "ops", "deterministic_concatenate", delay
            )
    for due in (-1, True, "soon", 10**16):
        with pytest.raises(ValidationError, match="available_at_ms"):
            intake.mem_tree_job("seal", {"tree_id": "t", "level": 0}, available_at_ms=due)
        with pytest.raises(ValidationError, match="scheduled_for_ms"):
            intake.check_decay_job(DecaySpec("candidate_compression", ("mem_1",)), "ops", due)  # type: ignore[arg-type]
    assert rows(db_url) == 0


def test_the_stored_payload_is_the_checked_one(runtime: Runtime, db_url: str) -> None:
    payload: dict[str, Any] = {"level": 0}
    job = NewJob("seal", payload)  # type: ignore[arg-type]
    payload["tree_id"] = "added after the job was made"  # the dict changes; the stored text does not
    producer = Producer(runtime.settings)
    try:
        with pytest.raises(ValidationError, match="'tree_id' must be a non-empty string"):
            producer.enqueue(job)
    finally:
        producer.close()
    assert rows(db_url) == 0


# ── retrieval failures ───────────────────────────────────────────────────────

GOOD_RECORD: dict[str, Any] = RetrievalFailure.new("no_hit", "vector", "where is my key").to_wire()
BAD_RECORDS: dict[str, dict[str, Any]] = {
    "unknown type": {**GOOD_RECORD, "failure_type": "bogus"},
    "empty strategy": {**GOOD_RECORD, "retrieval_strategy": ""},
    "strategy too long": {**GOOD_RECORD, "retrieval_strategy": "s" * 65},
    "negative length": {**GOOD_RECORD, "query_len": -1},
    "length below the text": {**GOOD_RECORD, "query_len": 2},
    "score NaN": {**GOOD_RECORD, "top_score": float("nan")},
    "count a string": {**GOOD_RECORD, "result_count": "3"},
    "edge types a string": {**GOOD_RECORD, "edge_types": "a,b"},
    "conversation with NUL": {**GOOD_RECORD, "conversation_id": "c\x00"},
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_retrieval_failure_gets_the_same_error_both_ways(
    runtime: Runtime, db_url: str, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    fields = BAD_RECORDS[case]
    with pytest.raises(ValidationError) as by_producer:
        RetrievalFailure(**fields)
    with caplog.at_level(logging.ERROR, logger="memtasks.remote"):
        result = FleetServices(runtime, Recorder()).remote.record_retrieval_failures([fields, GOOD_RECORD])
    assert result == {"written": 1, "rejected": 1}
    assert f"retrieval-failure record rejected: {by_producer.value}" in caplog.text
    assert rows(db_url) == 1, "the good record of the batch, alone"


def test_a_retrieval_failure_batch_is_a_list_of_at_most_the_maximum(runtime: Runtime, db_url: str) -> None:
    pipeline = FleetServices(runtime, Recorder())
    for batch in ({"records": []}, "[]", None, 5):
        with pytest.raises(ValidationError, match="batch must be a list of records"):
            pipeline.remote.record_retrieval_failures(batch)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=f"at most {intake.MAX_RETRIEVAL_FAILURE_BATCH} records"):
        pipeline.remote.record_retrieval_failures([GOOD_RECORD] * (intake.MAX_RETRIEVAL_FAILURE_BATCH + 1))
    for record in (
        {**GOOD_RECORD, "extra": 1},
        {k: v for k, v in GOOD_RECORD.items() if k != "query_len"},
        [1],
    ):
        assert pipeline.remote.record_retrieval_failures([record]) == {"written": 0, "rejected": 1}
    assert rows(db_url) == 0


def test_the_producer_s_sink_sends_batches_the_worker_accepts() -> None:
    sent: list[list[dict[str, Any]]] = []

    class App:
        def send_task(self, name: str, args: list[Any], queue: str) -> None:
            assert name == names.RECORD_RETRIEVAL_FAILURES and queue == names.DEFAULT
            sent.append(args[0])

    records = [
        RetrievalFailure.new("timeout", "graph", f"q{i}")
        for i in range(2 * intake.MAX_RETRIEVAL_FAILURE_BATCH + 5)
    ]
    CelerySink(App()).write(records)  # type: ignore[arg-type]
    assert [len(batch) for batch in sent] == [intake.MAX_RETRIEVAL_FAILURE_BATCH] * 2 + [5]
    for batch in sent:
        checked = intake.retrieval_failure_batch(batch)
        assert checked.rejected == () and len(checked.records) == len(batch)


# ── a live worker ────────────────────────────────────────────────────────────


@pytest.mark.slow
def test_a_live_worker_rejects_each_bad_input_with_the_producer_s_message(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/intake.sqlite3"
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    expected: list[str] = []
    for kind, payload, dedupe_key, max_attempts in BAD_MEM_TREE_JOBS.values():
        with pytest.raises(ValidationError) as refused:
            intake.mem_tree_job(kind, payload, dedupe_key, max_attempts=max_attempts)
        expected.append(f"enqueue rejected ({refused.value})")
    for kind, source_ids, created_by, method in BAD_DECAY_JOBS.values():
        with pytest.raises(ValidationError) as refused:
            intake.decay_job(kind, source_ids, created_by, method)
        expected.append(f"decay enqueue rejected ({refused.value})")
    expected.append("retrieval-failure batch rejected (a retrieval-failure batch must be a list of records")

    fleet.worker("w1", queues="default", concurrency=1)
    with client_app(settings) as app:
        for kind, payload, dedupe_key, max_attempts in BAD_MEM_TREE_JOBS.values():
            app.send_task(
                names.MEM_TREE_ENQUEUE,
                kwargs={
                    "kind": kind,
                    "payload": payload,
                    "dedupe_key": dedupe_key,
                    "max_attempts": max_attempts,
                },
                queue=names.DEFAULT,
            )
        for kind, source_ids, created_by, method in BAD_DECAY_JOBS.values():
            app.send_task(
                names.DECAY_ENQUEUE,
                kwargs={"kind": kind, "source_ids": source_ids, "created_by": created_by, "method": method},
                queue=names.DEFAULT,
            )
        app.send_task(names.RECORD_RETRIEVAL_FAILURES, args=[{"not": "a list"}], queue=names.DEFAULT)
        app.send_task(
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": "last", "level": 0}},
            queue=names.DEFAULT,
        )

    wait_until(lambda: all(line in fleet.log("w1") for line in expected), 90, "every rejection logged", fleet)
    wait_until(lambda: rows(db_url) == 1, 30, "the valid job after them enqueued", fleet)
    assert fleet.log("w1").count("rejected (") == len(expected)
    with get_engine(db_url).connect() as conn:
        assert (
            conn.execute(select(mem_tree_jobs.c.payload_json)).scalar_one() == '{"level":0,"tree_id":"last"}'
        )
