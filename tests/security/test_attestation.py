"""No producer path can get an LLM summary without a verified operator attestation.

Every way a decay job is made — the producer API, the remote ``memtasks.decay.enqueue`` task,
``memtasks enqueue decay``, a row written straight into the table — and every way one runs —
the ``memtasks.decay.run`` task, :meth:`DecayRunner.run_for_fleet`, :class:`DecayRunner`,
``memtasks decay run --attestation`` — is tried. The attestation is verified when the job
*runs*: a forged row gets no further than a genuine one. A refused job gets a reason and no
summary; the summary backend is never asked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from memtasks.cli import main
from memtasks.config import load_settings
from memtasks.domain.attestation import AttestationError, prompt_template_hash
from memtasks.domain.clock import HOUR_MS, MINUTE_MS, system_clock
from memtasks.domain.decay import DecayKind, DecaySpec, SummaryMethod
from memtasks.producer import Producer
from memtasks.services.attestation import AttestationVerifier, sign_attestation
from memtasks.services.decay_runner import DecayRunner
from memtasks.services.fleet import FleetServices
from memtasks.services.mem_tree import Followup
from memtasks.services.publishing import DecayMessage
from memtasks.services.runtime import Runtime, open_runtime
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.memory_tables import memories, supersessions
from memtasks.storage.tables import decay_jobs
from memtasks.worker import names
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import client_app, settings_from
from tests.security import plugins

pytestmark = [pytest.mark.security, pytest.mark.integration]

MODEL = "summariser-7b"
PROMPT = prompt_template_hash("Summarise:\n{sources}")
OPERATOR = Ed25519PrivateKey.generate()
INTRUDER = Ed25519PrivateKey.generate()


class Recorder:
    def __init__(self) -> None:
        self.decay_jobs: list[str] = []

    def mem_tree(self, jobs: Sequence[Followup]) -> None:
        pass

    def decay(self, jobs: Sequence[DecayMessage]) -> None:
        self.decay_jobs += [job.job_id for job in jobs]


@pytest.fixture
def operator_key(tmp_path: Path) -> Path:
    path = tmp_path / "operator.pem"
    path.write_bytes(OPERATOR.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def runtime(
    db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    for name, value in (
        ("MEMTASKS_DATABASE_URL", db_url),
        ("MEMTASKS_BROKER_URL", broker_url),
        ("MEMTASKS_LOCK_REDIS_URL", lock_url),
        ("MEMTASKS_SUMMARY_BACKEND", "tests.security.plugins:summary_backend"),
    ):
        monkeypatch.setenv(name, value)
    plugins.CALLS.clear()
    yield open_runtime(load_settings())
    plugins.CALLS.clear()


def sources(engine: Engine, count: int = 2) -> list[str]:
    store = MemoryStore(engine)
    return [
        store.insert_memory(claim=f"memory {i}", confidence=0.5, authority="candidate") for i in range(count)
    ]


def summaries(engine: Engine) -> int:
    with engine.connect() as conn:
        made = conn.execute(
            select(func.count()).select_from(memories).where(memories.c.memory_type == "summary")
        )
        edges = conn.execute(select(func.count()).select_from(supersessions))
        return int(made.scalar_one()) + int(edges.scalar_one())


def assert_no_summary(runtime: Runtime) -> None:
    assert summaries(runtime.engine) == 0, "an LLM summary was written"
    assert plugins.CALLS == [], "the summary backend was asked"


def forge_row(engine: Engine, ids: list[str]) -> str:
    """An LLM-summary job written straight into the table, claiming it needs no attestation."""
    job_id = f"dj_{uuid.uuid4().hex}"
    now = system_clock()
    with engine.begin() as conn:
        conn.execute(
            insert(decay_jobs).values(
                id=job_id,
                kind="candidate_compression",
                source_ids_json=json.dumps(ids),
                summary_method="llm_summary",
                attestation_required=False,
                state="pending",
                scheduled_for_ms=now,
                created_at_ms=now,
                created_by="intruder",
                updated_at_ms=now,
            )
        )
    return job_id


def llm_job_via(path: str, runtime: Runtime, pipeline: FleetServices, cli: object) -> str:
    ids = sources(runtime.engine)
    spec = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, tuple(ids), SummaryMethod.LLM_SUMMARY)
    if path == "producer":
        producer = Producer(runtime.settings)
        try:
            return producer.enqueue_decay(spec, created_by="agent")
        finally:
            producer.close()
    if path == "remote task":
        return str(
            pipeline.remote.enqueue_decay("candidate_compression", ids, "agent", "llm_summary")["job_id"]
        )
    if path == "cli":
        code, out, err = cli(  # type: ignore[operator]
            "enqueue",
            "decay",
            "candidate_compression",
            *ids,
            "--created-by",
            "ops",
            "--method",
            "llm_summary",
        )
        assert code == 0, err
        return str(out.strip())
    assert path == "forged row"
    return forge_row(runtime.engine, ids)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> object:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        return int(exited.value.code or 0), captured.out, captured.err

    return run


PATHS = ["producer", "remote task", "cli", "forged row"]


@pytest.mark.parametrize("path", PATHS)
def test_no_unattended_run_makes_an_llm_summary(runtime: Runtime, cli: object, path: str) -> None:
    recorder = Recorder()
    pipeline = FleetServices(runtime, recorder)
    job_id = llm_job_via(path, runtime, pipeline, cli)
    # Never published, never dispatched: only an operator runs it.
    assert pipeline.maintenance.dispatch_due()["decay"] == 0 and recorder.decay_jobs == []
    # The worker's `memtasks.decay.run` (a message sent by hand) leaves it to an operator.
    assert pipeline.decay.run_for_fleet(job_id).outcome == "needs_operator"
    # An unattended runner never picks it.
    assert DecayRunner(runtime.engine, runtime.decay).run_next() is None
    job = runtime.decay.get(job_id)
    assert job is not None and job.state.value == "pending"
    assert_no_summary(runtime)

    # A runner told to take LLM jobs — with no attestation, then with no operator key — fails it.
    with pytest.raises(AttestationError, match="requires_operator_attestation"):
        DecayRunner(
            runtime.engine,
            runtime.decay,
            summary_backend=plugins.RecordingBackend(),
            verifier=AttestationVerifier(OPERATOR.public_key(), MODEL, PROMPT),
        ).run_next(include_llm=True)
    failed = runtime.decay.get(job_id)
    assert failed is not None and failed.state.value == "failed"
    assert failed.state_reason == "decay.llm_summary.requires_operator_attestation"
    assert_no_summary(runtime)


def attestation(job_id: str, key: Ed25519PrivateKey = OPERATOR, **overrides: object) -> str:
    now = system_clock()
    fields: dict[str, object] = {
        "job_id": job_id,
        "model": MODEL,
        "prompt_template_hash": PROMPT,
        "operator_id": "op:alice",
        "issued_at_ms": now - MINUTE_MS,
        "expires_at_ms": now + HOUR_MS,
    }
    fields.update(overrides)
    return sign_attestation(key, **fields)  # type: ignore[arg-type]


def tampered(job_id: str) -> str:
    document = json.loads(attestation(job_id, model="small-model"))
    document["model"] = MODEL  # signed for another model, then edited
    return json.dumps(document)


REFUSALS = {
    "forged (another key)": (lambda j: attestation(j, INTRUDER), "decay.attestation.bad_signature"),
    "tampered after signing": (tampered, "decay.attestation.bad_signature"),
    "expired": (
        lambda j: attestation(
            j, issued_at_ms=system_clock() - 2 * HOUR_MS, expires_at_ms=system_clock() - HOUR_MS
        ),
        "decay.attestation.expired",
    ),
    "not yet valid": (
        lambda j: attestation(
            j, issued_at_ms=system_clock() + HOUR_MS, expires_at_ms=system_clock() + 2 * HOUR_MS
        ),
        "decay.attestation.not_yet_valid",
    ),
    "wrong purpose": (lambda j: attestation(j, purpose="decay.other"), "decay.attestation.purpose"),
    "wrong model": (lambda j: attestation(j, model="other-model"), "decay.attestation.model_mismatch"),
    "wrong prompt": (
        lambda j: attestation(j, prompt_template_hash=prompt_template_hash("other")),
        "decay.attestation.prompt_hash_mismatch",
    ),
    "another job's": (lambda j: attestation(f"dj_{uuid.uuid4().hex}"), "decay.attestation.job_mismatch"),
    "malformed": (lambda j: "{not json", "decay.attestation.malformed"),
    "wrong schema": (lambda j: attestation(j, schema_version=2), "decay.attestation.schema_version"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_decay_run_refuses_every_bad_attestation_at_run_time(
    runtime: Runtime,
    cli: object,
    operator_key: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    case: str,
) -> None:
    monkeypatch.setenv("MEMTASKS_OPERATOR_PUBLIC_KEY", str(operator_key))
    monkeypatch.setenv("MEMTASKS_LLM_MODEL", MODEL)
    monkeypatch.setenv("MEMTASKS_LLM_PROMPT_TEMPLATE_HASH", PROMPT)
    job_id = llm_job_via(path, runtime, FleetServices(runtime, Recorder()), cli)
    make, code = REFUSALS[case]
    document = tmp_path / "attestation.json"
    document.write_text(make(job_id))
    exit_code, _, err = cli("decay", "run", job_id, "--attestation", str(document))  # type: ignore[operator]
    assert exit_code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and code in lines[0], err
    job = runtime.decay.get(job_id)
    assert job is not None and (job.state.value, job.state_reason) == ("failed", code)
    assert_no_summary(runtime)


@pytest.mark.parametrize("path", PATHS)
def test_decay_run_without_an_attestation_or_an_operator_key_runs_nothing(
    runtime: Runtime,
    cli: object,
    operator_key: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    job_id = llm_job_via(path, runtime, FleetServices(runtime, Recorder()), cli)
    code, _, err = cli("decay", "run", job_id)  # type: ignore[operator]
    assert code == 1 and "is an LLM-summary job" in err and "--attestation" in err
    job = runtime.decay.get(job_id)
    assert job is not None and job.state.value == "pending", "refused before the claim"

    # A valid attestation, but no operator key configured to check it against.
    document = tmp_path / "attestation.json"
    document.write_text(attestation(job_id))
    code, _, err = cli("decay", "run", job_id, "--attestation", str(document))  # type: ignore[operator]
    assert code == 1 and "decay.attestation.no_operator_key" in err
    failed = runtime.decay.get(job_id)
    assert failed is not None and failed.state_reason == "decay.attestation.no_operator_key"
    assert_no_summary(runtime)


@pytest.mark.parametrize("path", PATHS)
def test_a_valid_attestation_is_the_one_way_through(
    runtime: Runtime,
    cli: object,
    operator_key: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    monkeypatch.setenv("MEMTASKS_OPERATOR_PUBLIC_KEY", str(operator_key))
    monkeypatch.setenv("MEMTASKS_LLM_MODEL", MODEL)
    monkeypatch.setenv("MEMTASKS_LLM_PROMPT_TEMPLATE_HASH", PROMPT)
    job_id = llm_job_via(path, runtime, FleetServices(runtime, Recorder()), cli)
    document = tmp_path / "attestation.json"
    document.write_text(attestation(job_id))
    code, out, err = cli("decay", "run", job_id, "--attestation", str(document))  # type: ignore[operator]
    assert code == 0, err
    assert f"{job_id} completed: summary memory mem_" in out
    assert len(plugins.CALLS) == 1 and plugins.CALLS[0][1:] == (MODEL, PROMPT)
    assert summaries(runtime.engine) == 3, "one summary and its two supersession edges"
    # The same attestation cannot be replayed for another job.
    other = llm_job_via(path, runtime, FleetServices(runtime, Recorder()), cli)
    code, _, err = cli("decay", "run", other, "--attestation", str(document))  # type: ignore[operator]
    assert code == 1 and "decay.attestation.job_mismatch" in err
    assert len(plugins.CALLS) == 1


def pending_llm_jobs(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(decay_jobs.c.id).where(
                decay_jobs.c.state == "pending", decay_jobs.c.summary_method == "llm_summary"
            )
        )
        return sorted(str(row.id) for row in rows)


@pytest.mark.slow
def test_a_live_worker_never_runs_an_llm_job_whatever_it_is_sent(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/decay.sqlite3"
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    runtime = open_runtime(settings)
    ids = sources(runtime.engine)
    forged = forge_row(runtime.engine, ids)
    fleet.worker("w1", queues="default", concurrency=1)
    with client_app(settings) as app:
        app.send_task(
            names.DECAY_ENQUEUE,
            kwargs={
                "kind": "candidate_compression",
                "source_ids": ids,
                "created_by": "agent",
                "method": "llm_summary",
            },
            queue=names.DEFAULT,
        )
        wait_until(
            lambda: len(pending_llm_jobs(runtime.engine)) == 2, 60, "the remote LLM job inserted", fleet
        )
        for job_id in pending_llm_jobs(runtime.engine):  # a run message for each, sent by hand
            app.send_task(names.DECAY_RUN, args=[job_id], queue=names.DEFAULT)
    refusal = "is an LLM summary: it runs only with `memtasks decay run"
    wait_until(lambda: fleet.log("w1").count(refusal) == 2, 60, "both runs refused", fleet)
    assert forged in pending_llm_jobs(runtime.engine) and len(pending_llm_jobs(runtime.engine)) == 2
    assert summaries(runtime.engine) == 0
