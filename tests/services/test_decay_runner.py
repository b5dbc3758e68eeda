"""The decay runner on a real SQLite file and a real PostgreSQL.

Ports the seed's runner tests, then compression effects, attestation-gated LLM summaries
and the lease fence around the one transaction that lands a summary.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert

from memtasks.domain.attestation import AttestationError, prompt_template_hash
from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import HOUR_MS, MINUTE_MS, FrozenClock
from memtasks.domain.compression import Source, SourceKind
from memtasks.domain.decay import DecayKind, DecaySpec, DecayState, SummaryMethod
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import FailureClass
from memtasks.locks import redis_client
from memtasks.permits import RedisSemaphore
from memtasks.services.attestation import AttestationVerifier, sign_attestation
from memtasks.services.decay_runner import DecayRunner, SettleFenced, SummaryBackendRefused
from memtasks.services.holding import Holding, PermitsBusy
from memtasks.storage.decay_queue import DecayJob, DecayJobs
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.queue import QueueConfig
from memtasks.storage.tables import decay_jobs

pytestmark = pytest.mark.integration


def recovered(decay: DecayJobs) -> tuple[list[str], list[str]]:
    result = decay.recover_expired()
    return result.requeued, result.failed


MODEL = "summariser-7b"
PROMPT = prompt_template_hash("Summarise:\n{sources}")
OPERATOR = Ed25519PrivateKey.generate()


class RecordingBackend:
    """A test summary backend: a fixed summary of the texts, every call recorded."""

    def __init__(self, hook: Callable[[], None] | None = None, reply: str | None = None) -> None:
        self.calls: list[tuple[tuple[str, ...], str, str]] = []
        self.hook = hook
        self.reply = reply

    def summarise(self, sources: Sequence[Source], model: str, prompt_template_hash: str) -> str:
        self.calls.append((tuple(s.id for s in sources), model, prompt_template_hash))
        if self.hook is not None:
            self.hook()
        return self.reply if self.reply is not None else "LLM: " + " / ".join(s.text for s in sources)


@pytest.fixture
def decay(engine: Engine, clock: FrozenClock) -> DecayJobs:
    return DecayJobs(engine, clock=clock)


@pytest.fixture
def store(engine: Engine, clock: FrozenClock) -> MemoryStore:
    return MemoryStore(engine, clock=clock)


@pytest.fixture
def verifier() -> AttestationVerifier:
    return AttestationVerifier(OPERATOR.public_key(), MODEL, PROMPT)


def make_runner(
    engine: Engine, decay: DecayJobs, verifier: AttestationVerifier | None = None, backend: object = None
) -> DecayRunner:
    return DecayRunner(engine, decay, summary_backend=backend, verifier=verifier)  # type: ignore[arg-type]


@pytest.fixture
def runner(engine: Engine, decay: DecayJobs, verifier: AttestationVerifier) -> DecayRunner:
    return make_runner(engine, decay, verifier)


def add_memory(store: MemoryStore, claim: str, **overrides: object) -> str:
    fields: dict[str, object] = {
        "confidence": 0.7,
        "authority": "candidate",
        "domains": ["t"],
        "provenance": ["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    }
    fields.update(overrides)
    return store.insert_memory(claim=claim, **fields)  # type: ignore[arg-type]


def det(*ids: str) -> DecaySpec:
    return DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ids)


def llm(*ids: str) -> DecaySpec:
    return DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ids, SummaryMethod.LLM_SUMMARY)


def attest(job_id: str, clock: FrozenClock, key: Ed25519PrivateKey = OPERATOR, **overrides: object) -> str:
    fields: dict[str, object] = {
        "job_id": job_id,
        "model": MODEL,
        "prompt_template_hash": PROMPT,
        "operator_id": "op:alice",
        "issued_at_ms": clock.now_ms,
        "expires_at_ms": clock.now_ms + HOUR_MS,
    }
    fields.update(overrides)
    return sign_attestation(key, **fields)  # type: ignore[arg-type]


def state_of(decay: DecayJobs, job_id: str) -> DecayJob:
    job = decay.get(job_id)
    assert job is not None
    return job


# ── the seed's runner tests ──────────────────────────────────────────────────


def test_pending_to_completed_atomically_with_a_result_memory(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore, clock: FrozenClock
) -> None:
    m1, m2 = add_memory(store, "alpha"), add_memory(store, "beta")
    job_id = decay.enqueue(det(m1, m2), created_by="operator:test")
    clock.advance(60_000)
    assert runner.run_next() == job_id
    job = state_of(decay, job_id)
    assert job.state is DecayState.COMPLETED
    assert job.result_memory_id is not None and job.result_memory_id.startswith("mem_")
    assert job.lease_token is None and job.locked_until_ms is None
    summary = store.get_memory(job.result_memory_id)
    assert summary is not None and summary.claim == "alpha\nbeta"


def test_inner_error_fails_the_job_with_the_invariant_reason(runner: DecayRunner, decay: DecayJobs) -> None:
    job_id = decay.enqueue(det("mem_phantom"), created_by="operator:test")
    with pytest.raises(ValidationError) as info:
        runner.run_next()
    assert info.value.code == "decay.compress.source_missing"
    assert "decay.compress.source_missing" in str(info.value)
    assert any(job_id in note for note in info.value.__notes__)
    job = state_of(decay, job_id)
    assert job.state is DecayState.FAILED
    assert job.state_reason == "decay.compress.source_missing"
    assert job.state_reason.strip()


def test_completed_job_is_idempotent_on_re_run(
    runner: DecayRunner,
    decay: DecayJobs,
    store: MemoryStore,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = decay.enqueue(det(add_memory(store, "alpha"), add_memory(store, "beta")), created_by="op")
    assert runner.run_next() == job_id
    before = state_of(decay, job_id)
    memories_before = store.count_memories()
    clock.advance(10_000)
    caplog.set_level("INFO")
    outcome = runner.run_by_id(job_id)
    assert outcome.ran is False
    assert outcome.state is DecayState.COMPLETED and outcome.result_memory_id == before.result_memory_id
    assert state_of(decay, job_id) == before, "the row is untouched"
    assert store.count_memories() == memories_before
    assert f"memtasks.decay.runner stage=skip_terminal job={job_id}" in caplog.text


def test_idle_when_the_queue_is_empty(runner: DecayRunner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert runner.run_next() is None
    assert "memtasks.decay.runner stage=idle" in caplog.text


def test_refuses_to_re_claim_an_in_progress_job(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    job_id = decay.enqueue(det(add_memory(store, "alpha")), created_by="op")
    assert decay.claim(job_id) is not None, "forced into in_progress without dispatch"
    before = state_of(decay, job_id)
    with pytest.raises(ValidationError, match="already in_progress") as info:
        runner.run_by_id(job_id)
    assert info.value.code == "decay.job.in_progress"
    assert state_of(decay, job_id) == before


def test_llm_job_stays_pending_for_run_next_and_fails_closed_by_id_without_attestation(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    assert runner.run_next() is None, "unattended workers never pick LLM jobs"
    assert state_of(decay, job_id).state is DecayState.PENDING
    with pytest.raises(AttestationError) as info:
        runner.run_by_id(job_id)
    assert info.value.code == "decay.llm_summary.requires_operator_attestation"
    job = state_of(decay, job_id)
    assert job.state is DecayState.FAILED
    assert job.state_reason == "decay.llm_summary.requires_operator_attestation"
    assert store.count_memories(memory_type="summary") == 0


def test_skips_a_job_scheduled_in_the_future_and_runs_it_once_due(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore, clock: FrozenClock
) -> None:
    job_id = decay.enqueue(
        det(add_memory(store, "alpha")), created_by="op", scheduled_for_ms=clock.now_ms + 120_000
    )
    clock.advance(60_000)
    assert runner.run_next() is None
    assert state_of(decay, job_id).state is DecayState.PENDING
    clock.advance(120_000)
    assert runner.run_next() == job_id
    assert runner.run_next() is None, "it runs once"
    assert state_of(decay, job_id).state is DecayState.COMPLETED


# ── run by id and the other kinds ────────────────────────────────────────────


def test_run_by_id_runs_a_pending_job_and_reports_it(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    job_id = decay.enqueue(det(add_memory(store, "alpha")), created_by="op")
    outcome = runner.run_by_id(job_id)
    assert outcome.ran and outcome.state is DecayState.COMPLETED
    assert outcome.result_memory_id == state_of(decay, job_id).result_memory_id
    for stage in ("claim", "dispatch", "settle", "complete"):
        assert f"memtasks.decay.runner stage={stage} job={job_id}" in caplog.text


def test_run_by_id_not_found_and_malformed(runner: DecayRunner, engine: Engine) -> None:
    with pytest.raises(ValidationError, match="decay job dj_missing not found") as info:
        runner.run_by_id("dj_missing")
    assert info.value.code == "decay.job.not_found"
    with engine.begin() as c:
        c.execute(
            insert(decay_jobs).values(
                id="dj_bad",
                kind="candidate_compression",
                source_ids_json='["mem_1", "ep_1"]',
                summary_method="deterministic_concatenate",
                state="pending",
                scheduled_for_ms=0,
                created_at_ms=0,
                created_by="x",
                updated_at_ms=0,
            )
        )
    with pytest.raises(ValidationError, match="dj_bad row malformed") as info:
        runner.run_by_id("dj_bad")
    assert info.value.code == "decay.compress.source_kind_mismatch"
    assert runner.run_next() is None, "run-next fails the malformed row and moves on"
    job = runner.decay_jobs.get("dj_bad")
    assert job is not None and job.state is DecayState.FAILED
    assert job.state_reason == "decay.compress.source_kind_mismatch"


def test_expired_principle_review_completes_without_a_memory(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    job_id = decay.enqueue(DecaySpec(DecayKind.EXPIRED_PRINCIPLE_REVIEW, ("pr_1",)), created_by="op")
    outcome = runner.run_by_id(job_id)
    assert outcome.ran and outcome.result_memory_id is None
    job = state_of(decay, job_id)
    assert job.state is DecayState.COMPLETED and job.result_memory_id is None
    assert store.count_memories() == 0


def test_cancel_through_the_runner(runner: DecayRunner, decay: DecayJobs, store: MemoryStore) -> None:
    a = decay.enqueue(det(add_memory(store, "alpha")), created_by="op")
    b = decay.enqueue(llm(add_memory(store, "beta")), created_by="op")
    assert runner.cancel(a)
    assert not runner.cancel(a), "only pending jobs cancel"
    with pytest.raises(ValidationError) as info:
        runner.cancel("dj_nope")
    assert info.value.code == "decay.job.not_found"
    assert runner.cancel_pending() == 1
    assert state_of(decay, b).state is DecayState.CANCELLED
    assert runner.run_next(include_llm=True) is None
    assert runner.run_by_id(a).ran is False


# ── deterministic compression effects ───────────────────────────────────────


def test_compression_writes_a_summary_and_supersession_edges_and_keeps_the_sources(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    m1 = add_memory(store, "alpha", confidence=0.9, authority="verified", domains=["a"], provenance=["e1"])
    m2 = add_memory(store, "béta", confidence=0.4, authority="agent", domains=["b", "a"], provenance=["e2"])
    m3 = add_memory(store, "gamma", confidence=0.6, authority="user", domains=["c"], provenance=["e1", "e3"])
    job_id = decay.enqueue(det(m2, m1, m3), created_by="op")
    memory_id = runner.run_by_id(job_id).result_memory_id
    assert memory_id is not None
    summary = store.get_memory(memory_id)
    assert summary is not None
    assert summary.claim == "béta\nalpha\ngamma", "source order, not insertion order"
    assert (summary.confidence, summary.authority) == (0.4, "agent")
    assert summary.domains == ("b", "a", "c")
    assert summary.provenance == ("e2", "e1", "e3")
    assert (summary.memory_type, summary.status) == ("summary", "candidate")
    edges = store.supersessions_of(memory_id)
    assert sorted(e.source_id for e in edges) == sorted([m1, m2, m3])
    assert {(e.source_kind, e.decay_job_id) for e in edges} == {(SourceKind.MEMORY, job_id)}
    kept = store.fetch_sources([m1, m2, m3])
    assert kept.missing == () and [s.text for s in kept.found] == ["alpha", "béta", "gamma"]


def test_episode_compression(runner: DecayRunner, decay: DecayJobs, store: MemoryStore) -> None:
    e1 = store.insert_episode(summary="met Bob", confidence=0.8, authority="user", domains=["social"])
    e2 = store.insert_episode(summary="Bob likes tea", confidence=0.5, authority="candidate")
    job_id = decay.enqueue(DecaySpec(DecayKind.EPISODE_COMPRESSION, (e1, e2)), created_by="op")
    memory_id = runner.run_by_id(job_id).result_memory_id
    assert memory_id is not None
    summary = store.get_memory(memory_id)
    assert summary is not None and summary.claim == "met Bob\nBob likes tea"
    assert (summary.confidence, summary.authority, summary.domains) == (0.5, "candidate", ("social",))
    edges = store.supersessions_of(memory_id)
    assert {(e.source_id, e.source_kind) for e in edges} == {
        (e1, SourceKind.EPISODE),
        (e2, SourceKind.EPISODE),
    }
    assert store.fetch_sources([e1, e2]).missing == ()


def test_equal_inputs_give_byte_identical_summaries(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    produced = []
    for _ in range(2):
        ids = [
            add_memory(store, "ünïcode ✓ " * 50, confidence=0.55, authority="user", domains=["x", "y"]),
            add_memory(store, "second", confidence=0.35, authority="agent", domains=["y", "z"]),
        ]
        memory_id = runner.run_by_id(decay.enqueue(det(*ids), created_by="op")).result_memory_id
        assert memory_id is not None
        row = store.get_memory(memory_id)
        assert row is not None
        produced.append(row)
    first, second = (dataclasses.replace(r, id="-") for r in produced)
    assert first == second
    assert first.claim.encode("utf-8") == second.claim.encode("utf-8")


def test_a_long_claim_is_cut_on_a_character_boundary(
    engine: Engine, decay: DecayJobs, store: MemoryStore
) -> None:
    from memtasks.domain.compression import CompressionPolicy

    runner = DecayRunner(engine, decay, policy=CompressionPolicy(max_claim_bytes=64))
    job_id = decay.enqueue(det(add_memory(store, "é" * 100), add_memory(store, "tail")), created_by="op")
    memory_id = runner.run_by_id(job_id).result_memory_id
    assert memory_id is not None
    summary = store.get_memory(memory_id)
    assert summary is not None
    assert len(summary.claim.encode("utf-8")) <= 64
    assert summary.claim == "é" * 24 + " …[truncated]", "64 - 15 = 49 bytes: 24 whole é"


def test_an_unknown_authority_fails_the_job_and_writes_nothing(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore
) -> None:
    job_id = decay.enqueue(det(add_memory(store, "a", authority="rumour")), created_by="op")
    with pytest.raises(ValidationError):
        runner.run_by_id(job_id)
    assert state_of(decay, job_id).state_reason == "decay.compress.unknown_authority"
    assert store.count_memories(memory_type="summary") == 0 and store.count_supersessions() == 0


# ── LLM summaries with an operator attestation ──────────────────────────────


def test_a_valid_attestation_lets_the_llm_path_run(
    engine: Engine, decay: DecayJobs, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    backend = RecordingBackend()
    runner = make_runner(engine, decay, verifier, backend)
    m1, m2 = add_memory(store, "alpha"), add_memory(store, "beta", confidence=0.2)
    job_id = decay.enqueue(llm(m1, m2), created_by="op")
    outcome = runner.run_by_id(job_id, attest(job_id, clock).encode())
    assert outcome.ran and outcome.result_memory_id is not None
    assert backend.calls == [((m1, m2), MODEL, PROMPT)], "the pinned model and prompt hash"
    summary = store.get_memory(outcome.result_memory_id)
    assert summary is not None and summary.claim == "LLM: alpha / beta"
    assert (summary.confidence, summary.memory_type, summary.status) == (0.2, "summary", "candidate")
    assert len(store.supersessions_of(outcome.result_memory_id)) == 2
    assert state_of(decay, job_id).state is DecayState.COMPLETED


def test_an_operator_drains_llm_jobs_with_run_next(
    engine: Engine, decay: DecayJobs, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    runner = make_runner(engine, decay, verifier, RecordingBackend())
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    assert runner.run_next(include_llm=True, attestation_for=lambda jid: attest(jid, clock)) == job_id
    assert state_of(decay, job_id).state is DecayState.COMPLETED


REJECTIONS: dict[str, tuple[Callable[[str, str, FrozenClock], str | None], str]] = {
    "wrong-key": (
        lambda j, _o, c: attest(j, c, Ed25519PrivateKey.generate()),
        "decay.attestation.bad_signature",
    ),
    "tampered": (
        lambda j, _o, c: json.dumps(json.loads(attest(j, c)) | {"model": "bigger-model"}),
        "decay.attestation.bad_signature",
    ),
    "wrong-purpose": (lambda j, _o, c: attest(j, c, purpose="decay.other"), "decay.attestation.purpose"),
    "model-name": (lambda j, _o, c: attest(j, c, model="bigger-model"), "decay.attestation.model_mismatch"),
    "prompt-hash": (
        lambda j, _o, c: attest(j, c, prompt_template_hash=prompt_template_hash("x")),
        "decay.attestation.prompt_hash_mismatch",
    ),
    "other-job": (lambda _j, other, c: attest(other, c), "decay.attestation.job_mismatch"),
    "expired": (
        lambda j, _o, c: attest(j, c, issued_at_ms=c.now_ms - 2 * HOUR_MS, expires_at_ms=c.now_ms - 1),
        "decay.attestation.expired",
    ),
    "malformed-json": (lambda _j, _o, _c: '{"schema_version": 1, ', "decay.attestation.malformed"),
    "schema-version": (lambda j, _o, c: attest(j, c, schema_version=2), "decay.attestation.schema_version"),
    "missing": (lambda _j, _o, _c: None, "decay.llm_summary.requires_operator_attestation"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_rejected_attestation_fails_the_job_with_its_code_and_writes_nothing(
    case: str,
    engine: Engine,
    decay: DecayJobs,
    store: MemoryStore,
    verifier: AttestationVerifier,
    clock: FrozenClock,
) -> None:
    make_document, code = REJECTIONS[case]
    backend = RecordingBackend()
    runner = make_runner(engine, decay, verifier, backend)
    m1 = add_memory(store, "alpha")
    job_id = decay.enqueue(llm(m1), created_by="op")
    other_job = decay.enqueue(llm(m1), created_by="op")
    with pytest.raises(AttestationError) as info:
        runner.run_by_id(job_id, make_document(job_id, other_job, clock))
    assert info.value.code == code
    job = state_of(decay, job_id)
    assert job.state is DecayState.FAILED and job.state_reason == code
    assert job.result_memory_id is None
    assert backend.calls == [], "the model is never asked"
    assert store.count_memories() == 1 and store.count_supersessions() == 0
    assert state_of(decay, other_job).state is DecayState.PENDING


def test_without_an_operator_key_llm_jobs_fail_closed(
    engine: Engine, decay: DecayJobs, store: MemoryStore, clock: FrozenClock
) -> None:
    backend = RecordingBackend()
    runner = make_runner(engine, decay, None, backend)
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    with pytest.raises(AttestationError) as info:
        runner.run_by_id(job_id, attest(job_id, clock))
    assert info.value.code == "decay.attestation.no_operator_key"
    assert state_of(decay, job_id).state_reason == "decay.attestation.no_operator_key"
    assert backend.calls == []


def test_the_default_backend_refuses_even_with_a_valid_attestation(
    runner: DecayRunner, decay: DecayJobs, store: MemoryStore, clock: FrozenClock
) -> None:
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    with pytest.raises(SummaryBackendRefused):
        runner.run_by_id(job_id, attest(job_id, clock))
    assert state_of(decay, job_id).state_reason == "decay.llm_summary.backend_refused"
    assert store.count_memories(memory_type="summary") == 0


def test_a_backend_error_without_a_code_fails_with_its_message(
    engine: Engine, decay: DecayJobs, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    def boom() -> None:
        raise RuntimeError("model server unreachable")

    once = DecayJobs(engine, clock=clock, max_attempts=1)
    runner = make_runner(engine, once, verifier, RecordingBackend(hook=boom))
    job_id = once.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    with pytest.raises(RuntimeError, match="model server unreachable"):
        runner.run_by_id(job_id, attest(job_id, clock))
    failed = state_of(decay, job_id)
    assert failed.state is DecayState.FAILED and failed.state_reason == "model server unreachable"

    blank = make_runner(engine, decay, verifier, RecordingBackend(reply="   "))
    job_id = decay.enqueue(llm(add_memory(store, "beta")), created_by="op")
    with pytest.raises(ValidationError):
        blank.run_by_id(job_id, attest(job_id, clock))
    assert state_of(decay, job_id).state_reason == "decay.compress.empty_summary"
    assert store.count_memories(memory_type="summary") == 0


# ── the lease fence ──────────────────────────────────────────────────────────


def steal(decay: DecayJobs, clock: FrozenClock, job_id: str) -> DecayJob:
    """Let the lease expire, recover the job and claim it again: the first claim is stale."""
    clock.advance(decay.lease_ms + 1)
    assert recovered(decay) == ([job_id], [])
    thief = DecayJobs.claim(decay, job_id)  # the plain claim, even on StealingDecayJobs
    assert thief is not None
    return thief


def test_a_lost_lease_during_an_llm_summary_rolls_everything_back(
    engine: Engine, decay: DecayJobs, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    m1 = add_memory(store, "alpha")
    job_id = decay.enqueue(llm(m1), created_by="op")
    thieves: list[DecayJob] = []
    runner = make_runner(
        engine, decay, verifier, RecordingBackend(hook=lambda: thieves.append(steal(decay, clock, job_id)))
    )
    document = attest(job_id, clock, expires_at_ms=clock.now_ms + HOUR_MS)
    with pytest.raises(SettleFenced):
        runner.run_by_id(job_id, document)
    assert store.count_memories() == 1, "no summary memory"
    assert store.count_supersessions() == 0, "no edges"
    job = state_of(decay, job_id)
    assert job.state is DecayState.IN_PROGRESS and job.lease_token == thieves[0].lease_token
    assert job.result_memory_id is None


class StealingDecayJobs(DecayJobs):
    """Claims, then loses the lease at once to another runner (recovered and re-claimed)."""

    def claim(self, job_id: str) -> DecayJob | None:
        first = super().claim(job_id)
        assert isinstance(self.clock, FrozenClock)
        steal(self, self.clock, job_id)
        return first


def test_a_lost_lease_during_a_deterministic_compression_rolls_everything_back(
    engine: Engine, store: MemoryStore, clock: FrozenClock
) -> None:
    decay = StealingDecayJobs(engine, clock=clock)
    runner = DecayRunner(engine, decay)
    job_id = decay.enqueue(det(add_memory(store, "alpha"), add_memory(store, "beta")), created_by="op")
    with pytest.raises(SettleFenced):
        runner.run_by_id(job_id)
    assert store.count_memories() == 2 and store.count_supersessions() == 0
    assert state_of(decay, job_id).state is DecayState.IN_PROGRESS


def test_a_lost_lease_on_the_failure_path_is_reported_not_recorded(
    engine: Engine, store: MemoryStore, clock: FrozenClock
) -> None:
    decay = StealingDecayJobs(engine, clock=clock)
    runner = DecayRunner(engine, decay)
    job_id = decay.enqueue(det("mem_phantom"), created_by="op")
    with pytest.raises(SettleFenced) as info:
        runner.run_by_id(job_id)
    assert isinstance(info.value.__cause__, ValidationError)
    job = state_of(decay, job_id)
    assert job.state is DecayState.IN_PROGRESS and job.state_reason is None


def test_a_slow_run_past_its_lease_is_fenced_even_without_a_re_claim(
    engine: Engine, decay: DecayJobs, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    def expire() -> None:
        clock.advance(decay.lease_ms + MINUTE_MS)
        decay.recover_expired()

    runner = make_runner(engine, decay, verifier, RecordingBackend(hook=expire))
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    with pytest.raises(SettleFenced):
        runner.run_by_id(job_id, attest(job_id, clock))
    assert state_of(decay, job_id).state is DecayState.PENDING, "back in the queue for a new run"
    assert store.count_supersessions() == 0 and store.count_memories() == 1


# ── retries ──────────────────────────────────────────────────────────────────


def test_a_transient_error_retries_after_its_backoff_until_the_attempts_are_spent(
    engine: Engine, store: MemoryStore, verifier: AttestationVerifier, clock: FrozenClock
) -> None:
    """A summary backend that times out is a transient failure: the job is pending again after
    min(base × 2^(attempt−1), cap), and fails with the error's message once its attempts are spent."""
    decay = DecayJobs(
        engine,
        clock=clock,
        config=QueueConfig(max_attempts=3, policy=RetryPolicy(base_ms=1_000, cap_ms=1_500, jitter=0)),
    )

    def timeout() -> None:
        raise TimeoutError("model server timed out")

    runner = make_runner(engine, decay, verifier, RecordingBackend(hook=timeout))
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")
    backoffs = []
    for attempt in (1, 2, 3):
        with pytest.raises(TimeoutError) as info:
            runner.run_by_id(job_id, attest(job_id, clock))
        job = state_of(decay, job_id)
        assert job.attempts == attempt and job.failure_class is FailureClass.TRANSIENT
        if attempt < 3:
            assert job.state is DecayState.PENDING, "it retries"
            assert any("it will retry" in note for note in info.value.__notes__)
            backoffs.append(job.last_backoff_ms)
            assert job.scheduled_for_ms == clock.now_ms + job.last_backoff_ms
            clock.advance(job.last_backoff_ms or 0)
    assert backoffs == [1_000, 1_500], "doubling, capped"
    job = state_of(decay, job_id)
    assert job.state is DecayState.FAILED and job.state_reason == "model server timed out"
    assert store.count_memories(memory_type="summary") == 0


def test_a_transient_error_then_success_completes_on_the_fleet_path(
    engine: Engine, store: MemoryStore, clock: FrozenClock
) -> None:
    """``run_for_fleet`` (what a worker's message does) reports each attempt and never raises."""
    decay = DecayJobs(engine, clock=clock, config=QueueConfig(policy=RetryPolicy(base_ms=500, jitter=0)))
    calls: list[int] = []

    class Flaky(DecayRunner):
        def _dispatch(self, *args: object, **kwargs: object) -> str | None:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("database hiccup")
            return super()._dispatch(*args, **kwargs)  # type: ignore[arg-type]

    runner = Flaky(engine, decay)
    job_id = decay.enqueue(det(add_memory(store, "alpha"), add_memory(store, "beta")), created_by="op")
    first = runner.run_for_fleet(job_id)
    assert (first.outcome, first.attempts) == ("retry", 1) and first.error == "database hiccup"
    assert runner.run_for_fleet(job_id).outcome == "not_claimable", "not before its backoff"
    clock.advance(500)
    second = runner.run_for_fleet(job_id)
    assert (second.outcome, second.attempts) == ("completed", 2) and second.result_memory_id is not None
    assert runner.run_for_fleet(job_id).outcome == "not_claimable", "done: a duplicate message does nothing"


# ── the LLM permit ───────────────────────────────────────────────────────────


def test_an_operator_run_of_an_llm_summary_holds_a_fleet_wide_permit(
    engine: Engine,
    decay: DecayJobs,
    store: MemoryStore,
    verifier: AttestationVerifier,
    clock: FrozenClock,
    redis_url: str,
    key_prefix: str,
) -> None:
    permits = RedisSemaphore(redis_client(redis_url), f"{key_prefix}llm-permits", limit=1, ttl_s=30)
    held_during_run: list[int] = []
    backend = RecordingBackend(hook=lambda: held_during_run.append(permits.held()))
    runner = DecayRunner(engine, decay, summary_backend=backend, verifier=verifier, holding=Holding(permits))
    job_id = decay.enqueue(llm(add_memory(store, "alpha")), created_by="op")

    other = permits.acquire()  # a worker of the fleet runs an LLM job right now
    assert other is not None
    with pytest.raises(PermitsBusy):
        runner.run_by_id(job_id, attest(job_id, clock))
    assert state_of(decay, job_id).state is DecayState.PENDING, "nothing claimed"
    assert backend.calls == []
    permits.release(other)

    assert runner.run_by_id(job_id, attest(job_id, clock)).ran
    assert held_during_run == [1], "the operator's run held the one permit"
    assert permits.held() == 0, "and gave it back"
