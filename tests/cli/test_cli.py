"""The `memtasks` command against real SQLite/PostgreSQL and Redis, bad input included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from memtasks.cli import main
from memtasks.domain.clock import system_clock
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.services.attestation import sign_attestation
from memtasks.services.retrieval_failures import DatabaseSink
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.migrate import head_revision, upgrade
from tests.helpers import wait_for
from tests.pipeline.fleet import ROOT

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def bare_cli(
    db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Run `memtasks ARGS…` in this process against an empty database; (exit code, stdout, stderr)."""
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_LOCK_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/6")
    monkeypatch.setenv("MEMTASKS_BROKER_URL", redis_url.rsplit("/", 1)[0] + "/5")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        return int(exited.value.code or 0), captured.out, captured.err

    return run


@pytest.fixture
def cli(bare_cli: Run, db_url: str) -> Run:
    """Run `memtasks ARGS…` in this process against a database at the newest revision."""
    upgrade(get_engine(db_url, EngineOptions(auto_migrate=False)))
    return bare_cli


def one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ── db ───────────────────────────────────────────────────────────────────────


def test_db_upgrade_and_current(bare_cli: Run, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = bare_cli
    monkeypatch.setenv("MEMTASKS_AUTO_MIGRATE", "false")
    code, out, _ = cli("db", "current", "--check")
    missing = "(no database file)" if db_url.startswith("sqlite") else "(empty database)"
    assert code == 1 and f"revision none {missing}" in out
    code, _, err = cli("status")
    one_error_line(code, err, "run `memtasks db upgrade`")
    assert code == 2 and "no such table" not in err
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and f"empty → revision {head_revision()} (head)" in out
    code, out, _ = cli("db", "upgrade")
    assert code == 0 and f"already at revision {head_revision()}" in out
    assert cli("db", "current", "--check")[0] == 0


# ── status, jobs ─────────────────────────────────────────────────────────────


def test_status_counts_jobs_by_queue_kind_and_status(cli: Run, db_url: str) -> None:
    assert cli("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}')[0] == 0
    assert cli("enqueue", "mem-tree", "extract_chunk", "-p", '{"chunk_id": "c1"}')[0] == 0
    jobs = MemTreeJobs(get_engine(db_url))
    failing = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    assert failing is not None
    jobs.settle_failed(failing.lease, "bad input", FailureClass.UNRECOVERABLE)

    code, out, _ = cli("status", "--json")
    assert code == 0
    report = json.loads(out)
    rows = {row["kind"]: row for row in report["jobs"]}
    assert (rows["seal"]["queue"], rows["seal"]["ready"]) == ("critical", 1)
    assert (rows["extract_chunk"]["queue"], rows["extract_chunk"]["failed"]) == ("bulk", 1)
    assert rows["extract_chunk"]["failed_by_class"] == {"unrecoverable": 1}
    code, out, _ = cli("status")
    assert code == 0 and "memory-tree jobs" in out and "extract_chunk" in out


def test_jobs_list_show_retry_cancel_and_requeue(cli: Run, db_url: str) -> None:
    jobs = MemTreeJobs(get_engine(db_url))
    [first, second] = jobs.enqueue_many(
        [
            NewJob(JobKind.SEAL, {"tree_id": "a", "level": 0}),
            NewJob(JobKind.SEAL, {"tree_id": "b", "level": 0}),
        ]
    )
    assert first and second
    code, out, _ = cli("jobs", "list", "--kind", "seal", "--json")
    listed = json.loads(out)["jobs"]
    assert code == 0 and {j["id"] for j in listed} == {first, second}
    assert all(isinstance(j["payload"], dict) and j["table"] == "mem_tree" for j in listed)
    code, out, _ = cli("jobs", "show", first)
    assert code == 0 and first in out and "ready" in out

    one_error_line(*cli("jobs", "retry", first)[::2], "only failed jobs can be retried")
    claimed = jobs.claim(first)
    assert claimed is not None
    jobs.settle_failed(claimed.lease, "boom", FailureClass.UNRECOVERABLE)
    code, out, _ = cli("jobs", "retry", first)
    assert code == 0 and "ready again" in out
    assert jobs.get(first).status.value == "ready"  # type: ignore[union-attr]

    assert cli("jobs", "cancel", second)[0] == 0
    one_error_line(*cli("jobs", "cancel", second)[::2], "already started or finished")

    claimed = jobs.claim(first)
    assert claimed is not None
    jobs.settle_failed(claimed.lease, "boom", FailureClass.UNRECOVERABLE)
    code, out, _ = cli("requeue", "--transient-only")
    assert code == 0 and out.startswith("0 failed jobs requeued")
    one_error_line(*cli("requeue")[::2], "requeue 1 failed jobs", "--yes")
    code, out, _ = cli("requeue", "--yes")
    assert code == 0 and out.startswith("1 failed jobs requeued")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("jobs", "show", "job:nope"), ("no job 'job:nope'",)),
        (("jobs", "show", "dj_nope"), ("no job 'dj_nope'",)),
        (("jobs", "cancel", "job:nope"), ("job:nope",)),
        (("jobs", "retry", "job:nope"), ("job:nope", "not found")),
        (("jobs", "list", "--status", "bogus"), ("unknown status 'bogus'",)),
        (("jobs", "list", "--kind", "topic_route"), ("unknown job kind 'topic_route'",)),
        (("enqueue", "mem-tree", "nope"), ("unknown job kind 'nope'",)),
        (("enqueue", "mem-tree", "seal", "-p", "{bad"), ("--payload is not valid JSON",)),
        (("enqueue", "mem-tree", "seal", "-p", "[1]"), ("must be a JSON object",)),
        (("enqueue", "mem-tree", "seal", "-p", '{"level": 0}'), ("'tree_id' must be a non-empty string",)),
        (
            ("enqueue", "decay", "nope", "m1", "--created-by", "ops"),
            ("unknown decay kind 'nope'", "use one of"),
        ),
        (("decay", "run", "dj_nope"), ("no decay job 'dj_nope'",)),
    ],
)
def test_bad_input_is_one_clear_line(cli: Run, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    code, _, err = cli(*args)
    one_error_line(code, err, *fragments)


# ── configuration and services ───────────────────────────────────────────────


def test_a_bad_database_url_is_one_line(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", "mysql://db/x")
    code, _, err = cli("status")
    one_error_line(code, err, "unsupported database 'mysql'", "MEMTASKS_DATABASE_URL")


def test_an_unreachable_database_is_one_line(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/test")
    code, _, err = cli("status")
    one_error_line(code, err, "127.0.0.1:1")


def test_a_bad_setting_is_one_line(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_LEASE_S", "-3")
    one_error_line(*cli("status")[::2], "MEMTASKS_LEASE_S")


def test_an_unreachable_redis_is_one_line(cli: Run) -> None:
    code, _, err = cli("--lock-redis-url", "redis://127.0.0.1:1/0", "consolidate")
    one_error_line(code, err, "127.0.0.1:1")


# ── consolidate ──────────────────────────────────────────────────────────────


def test_consolidate_dry_run_and_run(cli: Run) -> None:
    code, out, _ = cli("consolidate", "--dry-run")
    assert code == 0 and out.startswith("dry run: dry_run") and "would archive 0 messages" in out
    code, out, _ = cli("consolidate")
    assert code == 0 and "session gate: STOP" in out
    code, out, _ = cli("consolidate", "--force", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "ran"


# ── decay ────────────────────────────────────────────────────────────────────


def _memories(db_url: str) -> list[str]:
    store = MemoryStore(get_engine(db_url))
    return [store.insert_memory(claim=f"memory {i}", confidence=0.5, authority="candidate") for i in range(2)]


def _llm_job(cli: Run, db_url: str) -> str:
    """An LLM-summary decay job enqueued by an operator; its id."""
    code, out, _ = cli(
        "enqueue",
        "decay",
        "candidate_compression",
        *_memories(db_url),
        "--created-by",
        "ops",
        "--method",
        "llm_summary",
    )
    assert code == 0
    return out.strip()


def test_decay_run_of_a_deterministic_job(cli: Run, db_url: str) -> None:
    ids = _memories(db_url)
    code, out, _ = cli("enqueue", "decay", "candidate_compression", *ids, "--created-by", "ops")
    assert code == 0
    job_id = out.strip()
    code, out, _ = cli("decay", "run", job_id)
    assert code == 0 and f"{job_id} completed: summary memory" in out
    code, out, _ = cli("decay", "run", job_id)
    assert code == 0 and "already completed" in out


def test_an_llm_decay_job_needs_a_valid_attestation(
    cli: Run, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def llm_job() -> str:
        return _llm_job(cli, db_url)

    job_id = llm_job()
    one_error_line(*cli("decay", "run", job_id)[::2], "is an LLM-summary job", "--attestation")

    key = Ed25519PrivateKey.generate()
    public = tmp_path / "operator.pem"
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("MEMTASKS_OPERATOR_PUBLIC_KEY", str(public))
    monkeypatch.setenv("MEMTASKS_LLM_MODEL", "model-a")
    monkeypatch.setenv("MEMTASKS_LLM_PROMPT_TEMPLATE_HASH", "sha256:abc")
    malformed = tmp_path / "malformed.json"
    malformed.write_text("{not json")
    code, _, err = cli("decay", "run", job_id, "--attestation", str(malformed))
    one_error_line(code, err, "attestation")
    one_error_line(*cli("decay", "run", job_id)[::2], "is failed: nothing ran")
    job_id = llm_job()

    forged = tmp_path / "forged.json"
    other = Ed25519PrivateKey.generate()
    forged.write_text(
        sign_attestation(
            other,
            job_id=job_id,
            model="model-a",
            prompt_template_hash="sha256:abc",
            operator_id="ops",
            issued_at_ms=system_clock(),
            expires_at_ms=system_clock() + 600_000,
        )
    )
    code, _, err = cli("decay", "run", job_id, "--attestation", str(forged))
    one_error_line(code, err, "signature")
    job_id = llm_job()
    missing = tmp_path / "missing.json"
    one_error_line(
        *cli("decay", "run", job_id, "--attestation", str(missing))[::2], "cannot read the attestation"
    )


# ── failures report ──────────────────────────────────────────────────────────


def test_failures_report_groups_by_type_and_strategy(cli: Run, db_url: str) -> None:
    DatabaseSink(get_engine(db_url)).write(
        [RetrievalFailure.new("no_hit", "vector", f"q{i}").stamped(system_clock()) for i in range(3)]
        + [RetrievalFailure.new("timeout", "graph", "q").stamped(system_clock())]
    )
    code, out, _ = cli("failures", "report", "--hours", "1", "--json")
    assert code == 0
    rows = {(r["failure_type"], r["retrieval_strategy"]): r["count"] for r in json.loads(out)["groups"]}
    assert rows == {("no_hit", "vector"): 3, ("timeout", "graph"): 1}
    code, out, _ = cli("failures", "report")
    assert code == 0 and "4 failures" in out


# ── the console script and the celery conveniences ───────────────────────────


def test_the_console_script_starts_a_worker(tmp_path: Path, redis_url: str) -> None:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MEMTASKS_DATABASE_URL": f"sqlite:///{tmp_path}/w.sqlite3",
        "MEMTASKS_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/5",
        "MEMTASKS_LOCK_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/6",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "memtasks"),
                "worker",
                "-c",
                "1",
                "-n",
                "cli@%h",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: " ready." in log.read_text(errors="replace") or worker.poll() is not None, timeout=60
        )
        text = log.read_text(errors="replace")
        assert "celery -A memtasks.worker.app worker -Q critical,default,bulk,llm,maintenance" in text
        assert "cli@" in text and " ready." in text
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_the_console_script_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "memtasks"), "status"],
        env={"PATH": "/usr/bin:/bin", "MEMTASKS_DATABASE_URL": "sqlite://"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: sqlite:// names no file: memtasks needs a SQLite file that every worker process can open "
        "(e.g. sqlite:////var/lib/memtasks/memtasks.sqlite3)"
    ]


def test_decay_submit_hands_an_llm_summary_to_the_llm_queue(cli: Run, db_url: str, tmp_path: Path) -> None:
    job_id = _llm_job(cli, db_url)
    document = tmp_path / "attestation.json"
    document.write_text('{"schema_version": 1}')  # checked by the worker that runs it
    broker = redis.Redis.from_url(os.environ["MEMTASKS_BROKER_URL"])
    broker.flushdb()
    code, out, _ = cli("decay", "submit", job_id, "--attestation", str(document))
    assert code == 0 and f"{job_id} handed to the fleet (queue llm)" in out
    assert sum(broker.llen(key) for key in broker.scan_iter("llm*")) == 1, "one run message on the llm queue"
    job = DecayJobs(get_engine(db_url)).get(job_id)
    assert (
        job is not None and job.attestation_json == '{"schema_version": 1}' and job.state.value == "pending"
    )
    code, _, _ = cli("decay", "submit", job_id, "--attestation", str(document))
    assert code == 0, "handing it over again replaces the attestation"
    code, out, _ = cli("enqueue", "decay", "candidate_compression", *_memories(db_url), "--created-by", "ops")
    one_error_line(
        *cli("decay", "submit", out.strip(), "--attestation", str(document))[::2], "not a pending LLM"
    )
