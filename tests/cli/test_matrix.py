"""The `memtasks` console script as a user runs it: a real process against a migrated SQLite file
and a migrated PostgreSQL schema. Every command's ``--json`` parses as one JSON object; every
bad input exits with the code the README documents (2 usage/configuration, 1 otherwise) and
prints exactly one line on stderr; a read-only command creates nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from memtasks.config import load_settings
from memtasks.domain.clock import system_clock
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.services.retrieval_failures import DatabaseSink
from memtasks.services.runtime import open_runtime
from memtasks.storage.engine import EngineOptions, get_engine, reset_registry
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.migrate import head_revision, upgrade
from tests.conftest import POSTGRES_URL
from tests.helpers import old_closed_conversation
from tests.pipeline.fleet import ROOT

pytestmark = pytest.mark.integration

MEMTASKS = str(Path(sys.executable).parent / "memtasks")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

Run = Callable[..., subprocess.CompletedProcess[str]]


def runner(env: dict[str, str]) -> Run:
    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MEMTASKS, *args],
            env={**env, **(extra or {})},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,  # not a terminal: nothing may wait for an answer
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def base_env(db_url: str, redis_url: str) -> dict[str, str]:
    redis_base = redis_url.rsplit("/", 1)[0]
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MEMTASKS_DATABASE_URL": db_url,
        "MEMTASKS_BROKER_URL": f"{redis_base}/5",
        "MEMTASKS_LOCK_REDIS_URL": f"{redis_base}/6",
    }


@pytest.fixture
def bare(db_url: str, redis_url: str) -> Run:
    """The console script against an empty database (SQLite: a file that does not exist)."""
    return runner(base_env(db_url, redis_url))


@pytest.fixture
def run(db_url: str, bare: Run) -> Run:
    """The console script against a database at the newest revision."""
    upgrade(get_engine(db_url, EngineOptions(auto_migrate=False)))
    reset_registry()
    return bare


def one_line(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The process exited with ``code`` and printed exactly one ``error: …`` line on stderr."""
    lines = done.stderr.splitlines()
    assert done.returncode == code, f"exit {done.returncode}, expected {code}: {done.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def parsed(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    assert isinstance(value, dict), f"--json prints an object, got {type(value).__name__}"
    return value


# ── every --json parses ──────────────────────────────────────────────────────


def _seed(db_url: str) -> dict[str, str]:
    """A failed, a ready and a done job, two decay jobs, memories and retrieval failures."""
    engine = get_engine(db_url)
    jobs = MemTreeJobs(engine)
    failed, ready = jobs.enqueue_many(
        [
            NewJob(JobKind.SEAL, {"tree_id": "a", "level": 0}),
            NewJob(JobKind.SEAL, {"tree_id": "b", "level": 0}),
        ]
    )
    assert failed and ready
    claimed = jobs.claim(failed)
    assert claimed is not None
    jobs.settle_failed(claimed.lease, "boom", FailureClass.UNRECOVERABLE)
    store = MemoryStore(engine)
    memories = [store.insert_memory(claim=f"m{i}", confidence=0.5, authority="candidate") for i in range(4)]
    DatabaseSink(engine).write([RetrievalFailure.new("no_hit", "vector", "q").stamped(system_clock())])
    reset_registry()
    return {"failed": failed, "ready": ready, "memories": ",".join(memories)}


def test_every_json_output_parses(run: Run, db_url: str, tmp_path: Path) -> None:
    seeded = _seed(db_url)
    memories = seeded["memories"].split(",")

    assert parsed(run("db", "current", "--json"))["at_head"] is True
    assert parsed(run("db", "upgrade", "--json"))["changed"] is False
    status = parsed(run("status", "--json"))
    assert isinstance(status["jobs"], list) and ISO.match(str(status["now"]))

    listed = parsed(run("jobs", "list", "--json"))
    rows = listed["jobs"]
    assert isinstance(rows, list) and {r["id"] for r in rows} >= {seeded["failed"], seeded["ready"]}
    assert all(isinstance(r["payload"], dict) for r in rows), "the payload is an object, not a string"
    assert all(ISO.match(r["created_at"]) and isinstance(r["created_at_ms"], int) for r in rows)

    shown = parsed(run("jobs", "show", seeded["failed"], "--json"))
    assert shown["status"] == "failed" and shown["error"] == "boom" and shown["table"] == "mem_tree"
    assert parsed(run("jobs", "retry", seeded["failed"], "--json"))["status"] == "ready"
    assert parsed(run("jobs", "cancel", seeded["ready"], "--json"))["status"] == "cancelled"
    assert parsed(run("requeue", "--yes", "--json"))["requeued"] == 0

    enqueued = parsed(
        run(
            "enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}', "--dedupe-key", "k", "--json"
        )
    )
    assert enqueued["enqueued"] is True and str(enqueued["id"]).startswith("job:")
    again = parsed(
        run(
            "enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}', "--dedupe-key", "k", "--json"
        )
    )
    assert again == {**again, "enqueued": False, "deduped": True, "held_by": enqueued["id"]}
    human = run("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}', "--dedupe-key", "k")
    assert human.returncode == 0
    assert human.stdout.strip() == f"not enqueued: dedupe key k is held by {enqueued['id']} (ready)"

    decay = parsed(
        run("enqueue", "decay", "candidate_compression", *memories[:2], "--created-by", "ops", "--json")
    )
    decay_id = str(decay["id"])
    llm = parsed(
        run(
            "enqueue",
            "decay",
            "candidate_compression",
            *memories[2:],
            "--created-by",
            "ops",
            "--method",
            "llm_summary",
            "--json",
        )
    )
    decays = parsed(run("decay", "list", "--json"))["jobs"]
    assert isinstance(decays, list) and {d["id"] for d in decays} == {decay_id, llm["id"]}
    assert all(isinstance(d["source_ids"], list) for d in decays)
    assert {r["table"] for r in parsed(run("jobs", "list", "--table", "all", "--json"))["jobs"]} == {
        "mem_tree",
        "decay",
    }
    assert parsed(run("decay", "show", decay_id, "--json"))["status"] == "pending"
    assert parsed(run("jobs", "show", decay_id, "--json"))["table"] == "decay"
    assert parsed(run("jobs", "cancel", decay_id, "--json"))["status"] == "cancelled"
    assert parsed(run("jobs", "list", "--table", "decay", "--status", "cancelled", "--json"))["count"] == 1
    document = tmp_path / "attestation.json"
    document.write_text('{"schema_version": 1}')
    submitted = parsed(run("decay", "submit", str(llm["id"]), "--attestation", str(document), "--json"))
    assert submitted["submitted"] is True

    dry = parsed(run("consolidate", "--dry-run", "--json"))
    assert dry["dry_run"] is True and dry["recorded"] is False
    assert parsed(run("consolidate", "--json"))["outcome"] == "skipped"
    forced = parsed(run("consolidate", "--force", "--json"))
    assert forced["outcome"] == "ran" and ISO.match(str(forced["started_at"]))
    assert parsed(run("failures", "report", "--json"))["total"] == 1


def test_a_pruned_run_is_listed_shown_and_restored_once(run: Run, db_url: str) -> None:
    engine = get_engine(db_url, EngineOptions(auto_migrate=False))
    old_closed_conversation(engine, "gone-by", 3)
    reset_registry()
    plan = parsed(run("consolidate", "--dry-run", "--list", "--json"))
    assert plan["messages_pruned"] == 3 and plan["archive_grace_days"] == 7.0
    assert len(plan["listed"]["messages"]) == 3
    forced = parsed(run("consolidate", "--force", "--json"))
    assert forced["messages_pruned"] == 3
    listed = parsed(run("archive", "list", "--json"))
    assert listed["runs"] == [
        {"run_id": forced["run_id"], "archived_at_ms": forced["started_at_ms"], "messages": 3, "outcomes": 0}
    ]
    shown = parsed(run("archive", "show", str(forced["run_id"]), "--json"))
    assert sorted(m["id"] for m in shown["messages"]) == sorted(plan["listed"]["messages"])
    restored = parsed(run("archive", "restore", "--run", str(forced["run_id"]), "--json"))
    assert restored["restored"] == {"messages": 3, "outcomes": 0} and restored["found"] == 3
    again = run("archive", "restore", "--run", str(forced["run_id"]))
    assert again.returncode == 0 and "is in the archive (restored already" in again.stdout
    assert parsed(run("archive", "list", "--json"))["runs"] == []


def test_a_decay_job_is_run_retried_and_shown_like_a_memory_tree_job(run: Run, db_url: str) -> None:
    memories = _seed(db_url)["memories"].split(",")
    job_id = parsed(
        run("enqueue", "decay", "candidate_compression", *memories[:2], "--created-by", "ops", "--json")
    )["id"]
    ran = parsed(run("decay", "run", str(job_id), "--json"))
    assert ran["ran"] is True and ran["status"] == "completed"
    one_line(run("jobs", "retry", str(job_id)), 1, "is completed: only failed jobs can be retried")
    shown = run("jobs", "show", str(job_id))
    assert shown.returncode == 0
    assert re.search(r"completed_at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+\.\d[smhd] ago\)", shown.stdout)
    assert "_ms" not in shown.stdout.replace("last_backoff_ms", ""), "times are shown readable, not in ms"


# ── bad input: the documented code, one line ─────────────────────────────────

USAGE = 2
FAILED = 1

BAD_INPUT = [
    (("enqueue", "mem-tree", "bogus"), USAGE, ("unknown job kind 'bogus'", "use one of", "seal")),
    (("jobs", "list", "--status", "bogus"), USAGE, ("unknown status 'bogus'", "use one of")),
    (("jobs", "list", "--kind", "bogus"), USAGE, ("unknown job kind 'bogus'", "candidate_compression")),
    (("jobs", "list", "--table", "bogus"), USAGE, ("unknown table 'bogus'", "mem-tree, decay, all")),
    (("decay", "list", "--status", "ready"), USAGE, ("unknown status 'ready'", "pending")),
    (("requeue", "--table", "decay", "--kind", "seal"), USAGE, ("unknown decay kind 'seal'",)),
    (("enqueue", "mem-tree", "seal", "-p", "{bad"), USAGE, ("--payload is not valid JSON",)),
    (("enqueue", "mem-tree", "seal", "-p", "[1]"), USAGE, ("--payload must be a JSON object",)),
    (("enqueue", "mem-tree", "seal", "-p", '{"level": 0}'), USAGE, ("tree_id",)),
    (
        ("enqueue", "decay", "bogus", "m1", "--created-by", "ops"),
        USAGE,
        ("unknown decay kind 'bogus': use one of candidate_compression",),
    ),
    (
        ("enqueue", "decay", "candidate_compression", "m1", "--created-by", "ops", "--method", "x"),
        USAGE,
        ("unknown summary method 'x'", "llm_summary"),
    ),
    (("requeue", "--older-than", "3x"), USAGE, ("'3x' is not an age",)),
    (("requeue", "--failed-before", "-2h"), USAGE, ("is not an age",)),
    (("requeue", "--failure-class", "bogus"), USAGE, ("unknown failure class 'bogus'", "transient")),
    (
        ("requeue", "--transient-only", "--failure-class", "unrecoverable"),
        USAGE,
        ("contradict each other",),
    ),
    (("consolidate", "--dry-run", "--force"), USAGE, ("--dry-run and --force contradict each other",)),
    (("consolidate", "--list"), USAGE, ("give --dry-run with it",)),
    (("archive", "restore"), USAGE, ("say what to restore: --run ID, --conversation ID or --job ID",)),
    (
        ("archive", "restore", "--run", "1", "--job", "job:x"),
        USAGE,
        ("--run and --job contradict each other",),
    ),
    (("archive", "restore", "--run", "0"), USAGE, ("--run",)),
    (("archive", "show", "0"), USAGE, ("run_id",)),
    (("jobs", "list", "--bogus"), USAGE, ("No such option: --bogus", "memtasks jobs list --help")),
    (("jobs", "show"), USAGE, ("Missing argument", "memtasks jobs show --help")),
    (("jobs", "list", "--limit", "0"), USAGE, ("--limit",)),
    (("nosuchcommand",), USAGE, ("No such command",)),
    (("decay", "show", "job:x"), USAGE, ("not a decay job id",)),
    (("jobs", "show", "job:nope"), FAILED, ("no job 'job:nope'",)),
    (("jobs", "show", "job:nope", "--json"), FAILED, ("no job 'job:nope'",)),
    (("jobs", "retry", "job:nope"), FAILED, ("job:nope", "not found")),
    (("jobs", "retry", "dj_nope"), FAILED, ("dj_nope", "not found")),
    (("jobs", "cancel", "dj_nope"), FAILED, ("no job 'dj_nope'",)),
    (("decay", "run", "dj_nope"), FAILED, ("no decay job 'dj_nope'", "memtasks decay list")),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("args", "code", "fragments"), BAD_INPUT, ids=[" ".join(c[0]) for c in BAD_INPUT])
def test_bad_input_exits_with_the_documented_code_and_one_line(
    run: Run, args: tuple[str, ...], code: int, fragments: tuple[str, ...]
) -> None:
    done = run(*args)
    one_line(done, code, *fragments)
    assert done.stdout == "", "nothing on stdout when the command fails"


def test_requeue_asks_and_refuses_without_a_terminal(run: Run, db_url: str) -> None:
    failed = _seed(db_url)["failed"]
    one_line(run("requeue"), USAGE, "requeue 1 failed jobs", "--yes")
    one_line(run("requeue", "--json"), USAGE, "--yes")
    assert parsed(run("requeue", "--failure-class", "transient", "--json"))["matched"] == 0
    assert parsed(run("requeue", "--transient-only", "--json"))["matched"] == 0
    assert parsed(run("requeue", "--older-than", "1d", "--yes", "--json"))["matched"] == 0, "failed just now"
    assert parsed(run("requeue", "--kind", "candidate_compression", "--yes", "--json"))["matched"] == 0
    done = parsed(run("requeue", "--kind", "seal", "--failure-class", "unrecoverable", "--yes", "--json"))
    assert (done["matched"], done["requeued"]) == (1, 1)
    assert parsed(run("jobs", "show", failed, "--json"))["status"] == "ready"


def test_version_and_completion() -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run(
        [MEMTASKS, "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"memtasks {version('memtasks')}")
    for shell, marker in (
        ("bash", "complete -o"),
        ("zsh", "compdef"),
        ("fish", "complete --command memtasks"),
    ):
        done = subprocess.run(
            [MEMTASKS, "completion", shell],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and "_MEMTASKS_COMPLETE" in done.stdout and marker in done.stdout, (
            done.stderr
        )
    done = subprocess.run(
        [MEMTASKS, "jobs", "list", "--table", ""],
        env={
            **env,
            "_MEMTASKS_COMPLETE": "complete_bash",
            "COMP_WORDS": "memtasks jobs list --table ",
            "COMP_CWORD": "4",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert {"mem-tree", "decay", "all"} <= set(done.stdout.split()), done.stdout


# ── configuration and databases ──────────────────────────────────────────────


def test_a_bad_database_url_exits_2(tmp_path: Path, redis_url: str) -> None:
    done = runner(base_env("mysql://db/x", redis_url))("status")
    one_line(done, USAGE, "unsupported database 'mysql'", "MEMTASKS_DATABASE_URL")


def test_an_unreachable_postgresql_exits_1(redis_url: str) -> None:
    done = runner(base_env("postgresql://postgres@127.0.0.1:1/test", redis_url))("status", "--json")
    one_line(done, FAILED, "127.0.0.1:1")


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("jobs", "list"),
        ("failures", "report"),
        ("consolidate", "--dry-run"),
        ("decay", "list"),
        ("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}'),
        ("requeue", "--yes"),
        ("consolidate", "--force"),
        ("jobs", "retry", "job:x"),
        ("archive", "list"),
        ("archive", "show", "1"),
        ("archive", "restore", "--run", "1"),
    ],
    ids=" ".join,
)
def test_a_sqlite_file_that_does_not_exist_is_not_created(
    tmp_path: Path, redis_url: str, args: tuple[str, ...]
) -> None:
    path = tmp_path / "mistyped" / "dir" / "memtasks.sqlite3"
    done = runner(base_env(f"sqlite:///{path}", redis_url))(*args)
    one_line(done, USAGE, f"no memtasks database at {path}", "run `memtasks db upgrade`")
    assert not path.parent.parent.exists(), "no directory, no file"
    assert list(tmp_path.iterdir()) == []


def test_the_data_dir_default_is_not_created(tmp_path: Path, redis_url: str) -> None:
    env = base_env("", redis_url)
    del env["MEMTASKS_DATABASE_URL"]
    env["MEMTASKS_DATA_DIR"] = str(tmp_path / "data")
    one_line(runner(env)("status"), USAGE, "no memtasks database at", "MEMTASKS_DATA_DIR")
    assert not (tmp_path / "data").exists()


def _tables(schema_url: str) -> int:
    schema = schema_url.rsplit("search_path%3D", 1)[-1].rsplit("search_path=", 1)[-1]
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                    {"s": schema},
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("jobs", "list", "--json"),
        ("consolidate", "--dry-run"),
        ("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}'),
        ("requeue", "--yes"),
    ],
    ids=" ".join,
)
def test_an_empty_postgresql_schema_gets_no_tables(
    pg_schema: str, redis_url: str, args: tuple[str, ...]
) -> None:
    done = runner(base_env(pg_schema, redis_url))(*args)
    one_line(done, USAGE, "is at revision none", f"needs {head_revision()}", "run `memtasks db upgrade`")
    assert _tables(pg_schema) == 0, "information_schema lists no table in the schema"


def test_auto_migrate_false_says_run_db_upgrade(bare: Run) -> None:
    """Not `no such table: consolidation_runs`: the revision, and what to run."""
    done = bare("status", extra={"MEMTASKS_AUTO_MIGRATE": "false"})
    line = one_line(done, USAGE, "run `memtasks db upgrade`")
    assert "no such table" not in line


def test_a_database_behind_the_head_says_run_db_upgrade(bare: Run, db_url: str) -> None:
    upgrade(get_engine(db_url, EngineOptions(auto_migrate=False)), "0005")
    reset_registry()
    for args in (
        ("status",),
        ("jobs", "list", "--json"),
        ("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}'),
    ):
        one_line(
            bare(*args),
            USAGE,
            f"is at revision 0005, this memtasks needs {head_revision()}",
            "memtasks db upgrade",
        )
    done = bare("db", "current", "--check")
    assert done.returncode == 1 and "revision 0005" in done.stdout
    assert bare("db", "upgrade").returncode == 0
    assert bare("status", "--json").returncode == 0


def test_a_database_newer_than_the_code_says_upgrade_memtasks(run: Run, db_url: str) -> None:
    engine = get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    reset_registry()
    one_line(run("status"), USAGE, "revision 9999, newer than this memtasks knows", "upgrade memtasks")


# ── read-only really is ──────────────────────────────────────────────────────


@pytest.fixture
def migrated(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    upgrade(get_engine(db_url, EngineOptions(auto_migrate=False)))
    return db_url


def test_a_read_only_runtime_cannot_write(migrated: str) -> None:
    reader = open_runtime(load_settings(), read_only=True)
    with pytest.raises(Exception, match=r"(?i)read-?only"):
        reader.jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "a", "level": 0}))
    writer = MemTreeJobs(get_engine(migrated))
    job_id = writer.enqueue(NewJob(JobKind.SEAL, {"tree_id": "a", "level": 0}))
    assert reader.jobs.get(str(job_id)) is not None, "the reader sees what the writer committed"


def test_a_read_only_sqlite_reader_sees_wal_commits_while_a_writer_holds_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/wal.sqlite3"
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", url)
    writer_engine = get_engine(url)
    writer = MemTreeJobs(writer_engine)
    first = writer.enqueue(NewJob(JobKind.SEAL, {"tree_id": "a", "level": 0}))
    reader = open_runtime(load_settings(), read_only=True)
    with writer_engine.begin() as conn:  # BEGIN IMMEDIATE: the write lock is held
        conn.execute(text("UPDATE mem_tree_jobs SET priority = priority"))
        assert reader.jobs.get(str(first)) is not None, "a WAL snapshot read is not blocked"
    assert {p.name for p in tmp_path.iterdir()} <= {"wal.sqlite3", "wal.sqlite3-wal", "wal.sqlite3-shm"}


def test_consolidate_force_shows_progress_on_stderr(
    run: Run, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    from memtasks.cli import main, operate
    from tests.services.test_consolidation import add_outcomes_bulk

    add_outcomes_bulk(get_engine(db_url), "sender", 30)
    for name, value in base_env(db_url, redis_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEMTASKS_CONSOLIDATE_MAX_OUTCOMES_PER_SENDER", "3")
    monkeypatch.setenv("MEMTASKS_CONSOLIDATE_BATCH_SIZE", "10")
    monkeypatch.setattr(operate, "PROGRESS_EVERY_S", 0.0)
    with pytest.raises(SystemExit) as exited:
        main(["consolidate", "--force"])
    captured = capsys.readouterr()
    assert exited.value.code == 0
    progress = [line for line in captured.err.splitlines() if line.startswith("pruning:")]
    assert progress and progress[-1] == "pruning: 0 messages, 27 outcomes pruned so far", captured.err
    assert "archived 0 messages, 27 outcomes" in captured.out
    add_outcomes_bulk(get_engine(db_url), "sender", 30)
    with pytest.raises(SystemExit):
        main(["consolidate", "--force", "--json"])
    captured = capsys.readouterr()
    assert captured.err == "", "nothing but the JSON under --json"
    assert json.loads(captured.out)["outcomes_pruned"] == 30
