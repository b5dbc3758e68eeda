"""Decay jobs on a real fleet: retries with backoff, lost messages, bad rows, the ``llm`` queue.

Real ``celery worker`` and ``celery beat`` processes, a real Redis, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import insert

from memtasks.domain.attestation import prompt_template_hash
from memtasks.domain.clock import HOUR_MS, MINUTE_MS, system_clock
from memtasks.domain.decay import DecayKind, DecaySpec, DecayState, SummaryMethod
from memtasks.producer import Producer
from memtasks.services.attestation import sign_attestation
from memtasks.services.runtime import Runtime, open_runtime
from memtasks.storage.decay_queue import DecayJob
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.tables import decay_jobs
from memtasks.worker import names
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import FAST_BEAT, client_app, settings_from

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.slow]

MODEL = "summariser-7b"
PROMPT = prompt_template_hash("Summarise:\n{sources}")
OPERATOR = Ed25519PrivateKey.generate()


def memories(runtime: Runtime, *claims: str) -> tuple[str, ...]:
    store = MemoryStore(runtime.engine)
    return tuple(store.insert_memory(claim=c, confidence=0.6, authority="candidate") for c in claims)


def decay_row(runtime: Runtime, job_id: str) -> DecayJob:
    row = runtime.decay.get(job_id)
    assert row is not None
    return row


def test_a_transient_llm_failure_retries_with_backoff_then_completes(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The summary backend times out twice: the job is pending again after 0.3 s, then 0.6 s,
    and completes on its third attempt — on the ``llm`` queue, holding an LLM permit."""
    key = tmp_path / "operator.pem"
    key.write_bytes(OPERATOR.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        backoff_base_s=0.3,
        operator_public_key=key,
        llm_model=MODEL,
        llm_prompt_template_hash=PROMPT,
        summary_backend="tests.pipeline.plugins:flaky_backend",
        llm_permits=1,
    )
    settings = settings_from(fleet.env, monkeypatch)
    runtime = open_runtime(settings)
    spec = DecaySpec(
        DecayKind.CANDIDATE_COMPRESSION, memories(runtime, "alpha", "beta"), SummaryMethod.LLM_SUMMARY
    )
    producer = Producer(settings)
    try:
        job_id = producer.enqueue_decay(spec, created_by="agent")
        now = system_clock()
        document = sign_attestation(
            OPERATOR,
            job_id=job_id,
            model=MODEL,
            prompt_template_hash=PROMPT,
            operator_id="op:alice",
            issued_at_ms=now - MINUTE_MS,
            expires_at_ms=now + HOUR_MS,
        )
        assert producer.submit_decay(job_id, document)
    finally:
        producer.close()
    fleet.worker("llm", queues=f"{names.LLM},{names.MAINTENANCE}", concurrency=2)
    fleet.beat()
    wait_until(
        lambda: decay_row(runtime, job_id).state is DecayState.COMPLETED, 90, "the summary done", fleet
    )
    row = decay_row(runtime, job_id)
    assert row.attempts == 3, "two timeouts, then the summary"
    assert row.last_backoff_ms == 600, "the second retry waited 0.3 s × 2"
    assert row.result_memory_id is not None and row.failure_class is not None
    assert int(probes.get("flaky:calls") or 0) == 3
    log = fleet.log("llm")
    assert "attempt 1 failed, retries at" in log and "attempt 2 failed, retries at" in log
    assert "timed out (call 2)" in log
    assert redis.Redis.from_url(lock_url).zcard("memtasks:llm-permits") == 0, "the permit was released"


def test_a_decay_job_whose_message_was_lost_is_published_again_and_completes(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        redispatch_after_s=1,
    )
    settings = settings_from(fleet.env, monkeypatch)
    runtime = open_runtime(settings)
    producer = Producer(settings)
    try:
        spec = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, memories(runtime, "alpha", "beta"))
        job_id = producer.enqueue_decay(spec, created_by="agent")
    finally:
        producer.close()
    broker = redis.Redis.from_url(broker_url)
    queued = {key.decode(): broker.llen(key) for key in broker.scan_iter(f"{names.DEFAULT}*")}
    assert queued == {f"{names.DEFAULT}:4": 1}, "published to the default queue at its kind's priority"
    broker.flushall()
    fleet.worker("w1", queues=f"{names.DEFAULT},{names.MAINTENANCE}", concurrency=2)
    fleet.beat()
    wait_until(
        lambda: decay_row(runtime, job_id).state is DecayState.COMPLETED, 60, "the lost job done", fleet
    )
    row = decay_row(runtime, job_id)
    assert row.attempts == 1 and row.result_memory_id is not None


def test_a_malformed_decay_job_fails_once_with_its_code(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, beat=FAST_BEAT)
    settings = settings_from(fleet.env, monkeypatch)
    runtime = open_runtime(settings)
    job_id = f"dj_{uuid.uuid4().hex}"
    now = system_clock()
    with runtime.engine.begin() as conn:
        conn.execute(
            insert(decay_jobs).values(
                id=job_id,
                kind="candidate_compression",
                source_ids_json=json.dumps({"not": "a list"}),
                summary_method="deterministic_concatenate",
                state="pending",
                scheduled_for_ms=now,
                created_at_ms=now,
                created_by="intruder",
                updated_at_ms=now,
            )
        )
    fleet.worker("w1", queues=f"{names.DEFAULT},{names.MAINTENANCE}", concurrency=2)
    fleet.beat()
    with client_app(settings) as app:  # and a duplicate message on top of the dispatcher's
        app.send_task(names.DECAY_RUN, args=[job_id], queue=names.DEFAULT)
    wait_until(lambda: decay_row(runtime, job_id).state is DecayState.FAILED, 60, "the bad row failed", fleet)
    row = decay_row(runtime, job_id)
    assert row.state_reason == "decay.job.malformed"
    assert row.attempts == 1 and row.failure_class is not None and row.failure_class.value == "unrecoverable"
    assert runtime.decay.admin.requeue_failed(transient_only=True) == 0, "self-heal leaves it failed"
