"""Every SQL statement is parameterised: no SQL is built from strings, and hostile values are
stored and looked up literally.

The scan (:mod:`tests.security.sqlscan`) fails naming ``file:line`` for each string-built SQL
argument of ``text``/``execute``/``exec_driver_sql``/… under ``memtasks/``. The allowlist holds
only values that cannot be bound (a PRAGMA takes no parameter); each entry says why, and a guard
checks at that site that the value is validated.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from memtasks.cli import main
from memtasks.config import load_settings
from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.producer import Producer
from memtasks.services.retrieval_failures import DatabaseSink
from memtasks.storage.engine import SQLITE_JOURNAL_MODES, EngineOptions, get_engine
from memtasks.storage.memory_repo import MemoryStore
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.tables import decay_jobs, mem_tree_jobs
from tests.pipeline.fleet import ROOT
from tests.security.sqlscan import scan_source, scan_tree

pytestmark = pytest.mark.security

Guard = Callable[[ast.Module], bool]


def assigned_only_from(name: str, function: str) -> Guard:
    """Every assignment of ``name`` in the file is ``function(…)`` (e.g. ``int``), and there is one."""

    def guard(module: ast.Module) -> bool:
        values = [
            node.value
            for node in ast.walk(module)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ]
        return bool(values) and all(
            isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == function for v in values
        )

    return guard


def refused_unless_in(name: str, allowed: str) -> Guard:
    """``name`` is assigned once, and ``if name not in allowed: raise …`` follows it."""

    def guard(module: ast.Module) -> bool:
        assigned = [
            node
            for node in ast.walk(module)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ]
        checks = [
            node
            for node in ast.walk(module)
            if isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == name
            and isinstance(node.test.ops[0], ast.NotIn)
            and isinstance(node.test.comparators[0], ast.Name)
            and node.test.comparators[0].id == allowed
            and any(isinstance(stmt, ast.Raise) for stmt in node.body)
        ]
        return len(assigned) == 1 and len(checks) == 1 and checks[0].lineno > assigned[0].lineno

    return guard


@dataclass(frozen=True)
class Allowed:
    why: str
    guard: Guard


ALLOWED: dict[tuple[str, str], Allowed] = {
    # SQLite's PRAGMA statements take no bound parameters.
    ("memtasks/storage/engine.py", "f'PRAGMA busy_timeout = {busy_ms}'"): Allowed(
        "PRAGMA value; busy_ms is int(…) of the configured seconds: only digits reach the SQL",
        assigned_only_from("busy_ms", "int"),
    ),
    ("memtasks/storage/engine.py", "f'PRAGMA journal_mode = {wanted}'"): Allowed(
        "PRAGMA value; wanted must be one of SQLITE_JOURNAL_MODES (fixed words) or the engine is refused",
        refused_unless_in("wanted", "SQLITE_JOURNAL_MODES"),
    ),
}


def test_memtasks_builds_no_sql_from_strings() -> None:
    findings = scan_tree(ROOT, ROOT / "memtasks")
    unexpected = [str(f) for f in findings if (f.path, f.sql) not in ALLOWED]
    assert not unexpected, "string-built SQL (bind the value as a parameter):\n" + "\n".join(unexpected)
    used = {(f.path, f.sql) for f in findings}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"allowlist entries that match nothing (remove them): {stale}"
    for (path, sql), allowed in ALLOWED.items():
        module = ast.parse((ROOT / path).read_text())
        assert allowed.guard(module), f"{path}: {sql} is allowed only while {allowed.why}"


SCANNED = """
from sqlalchemy import text

LITERAL = "SELECT 1"
TABLE = "jobs"

def bad(conn, job_id, cursor, rows):
    conn.execute(text(f"SELECT * FROM jobs WHERE id = '{job_id}'"))            # 8
    conn.execute(text("SELECT * FROM jobs WHERE id = '%s'" % job_id))          # 9
    conn.execute(text("SELECT * FROM jobs WHERE id = '{}'".format(job_id)))    # 10
    conn.execute(text("SELECT * FROM jobs WHERE id = '" + job_id + "'"))       # 11
    sql = "DELETE FROM jobs WHERE id = " + job_id
    conn.exec_driver_sql(sql)                                                  # 13
    cursor.execute(f"PRAGMA journal_mode = {job_id}")                          # 14
    query = "SELECT 1"
    query += job_id
    cursor.executescript(query)                                                # 17
    conn.execute(text(", ".join(rows)))                                        # 18
    conn.execute(text("SELECT " + TABLE_NAME))                                 # 19

def through(where):
    return text(where)

def caller(x):
    through("status = 'ready'")
    through(f"status = '{x}'")                                                 # 26

def good(conn, job_id, ok):
    conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})
    conn.execute(text(LITERAL))
    conn.execute(text("SELECT " + ("a" if ok else "b")))
    conn.execute(text("SELECT 1 " "FROM jobs"))
    conn.execute(text(f"SELECT 1"))
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    conn.execute(select_something(job_id))
    pipe.execute()
"""


def test_the_scanner_finds_every_way_of_building_sql_and_nothing_else() -> None:
    findings = scan_source(SCANNED, "example.py")
    assert [f.line for f in findings] == [8, 9, 10, 11, 13, 14, 17, 18, 19, 26], [str(f) for f in findings]
    assert str(findings[0]) == "example.py:8: string-built SQL f\"SELECT * FROM jobs WHERE id = '{job_id}'\""


def test_the_allowlist_guards_fail_when_the_check_at_the_site_goes() -> None:
    checked = "wanted = mode.lower()\nif wanted not in SQLITE_JOURNAL_MODES:\n    raise ValueError(wanted)\n"
    assert refused_unless_in("wanted", "SQLITE_JOURNAL_MODES")(ast.parse(checked))
    assert not refused_unless_in("wanted", "SQLITE_JOURNAL_MODES")(ast.parse("wanted = mode.lower()\n"))
    unchecked_after = "if wanted not in SQLITE_JOURNAL_MODES:\n    raise ValueError()\nwanted = other\n"
    assert not refused_unless_in("wanted", "SQLITE_JOURNAL_MODES")(ast.parse(unchecked_after))
    assert assigned_only_from("busy_ms", "int")(ast.parse("busy_ms = int(seconds * 1000)\n"))
    assert not assigned_only_from("busy_ms", "int")(ast.parse("busy_ms = str(seconds)\n"))
    assert not assigned_only_from("busy_ms", "int")(ast.parse("busy_ms = int(s)\nbusy_ms = s\n"))


def test_a_journal_mode_outside_the_fixed_set_never_reaches_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pragma.sqlite3"
    assert load_settings().sqlite_journal_mode in SQLITE_JOURNAL_MODES
    hostile = "wal; DROP TABLE mem_tree_jobs; --"
    with pytest.raises(ConfigurationError, match="unknown SQLite journal mode"):
        get_engine(url, EngineOptions(journal_mode=hostile))
    engine = get_engine(url)
    assert {"mem_tree_jobs", "decay_jobs"} <= set(inspect(engine).get_table_names())
    with pytest.raises(ConfigurationError, match="MEMTASKS_SQLITE_JOURNAL_MODE"):
        load_settings(sqlite_journal_mode=hostile)


# ── hostile values through the public APIs ───────────────────────────────────

DROP = "'); DROP TABLE mem_tree_jobs; --"
ALWAYS = "' OR '1'='1"


@pytest.mark.integration
def test_hostile_values_are_stored_and_looked_up_literally(
    db_url: str,
    broker_url: str,
    lock_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in (
        ("MEMTASKS_DATABASE_URL", db_url),
        ("MEMTASKS_BROKER_URL", broker_url),
        ("MEMTASKS_LOCK_REDIS_URL", lock_url),
    ):
        monkeypatch.setenv(name, value)
    producer = Producer(load_settings())
    try:
        job_id = producer.enqueue(NewJob(JobKind.SEAL, {"tree_id": DROP, "level": 0}, dedupe_key=DROP))
        assert job_id is not None
        assert (
            producer.enqueue(NewJob(JobKind.SEAL, {"tree_id": "other", "level": 0}, dedupe_key=DROP)) is None
        ), "the dedupe key is compared literally"
        assert (
            producer.enqueue(NewJob(JobKind.SEAL, {"tree_id": "x", "level": 0}, dedupe_key=ALWAYS))
            is not None
        )
        memories = MemoryStore(producer.runtime.engine)
        source = memories.insert_memory(claim=DROP, confidence=0.5, authority="candidate")
        decay_id = producer.enqueue_decay(
            DecaySpec(DecayKind.CANDIDATE_COMPRESSION, (source,)), created_by=DROP
        )
    finally:
        producer.close()
    jobs, decay = producer.runtime.jobs, producer.runtime.decay
    stored = jobs.get(job_id)
    assert stored is not None and stored.dedupe_key == DROP
    assert json.loads(stored.payload_json)["tree_id"] == DROP
    decayed = decay.get(decay_id)
    assert decayed is not None and decayed.created_by == DROP
    for hostile in (DROP, ALWAYS, f"job:{ALWAYS}", f"{job_id}' OR '1'='1", f"dj_{ALWAYS}"):
        assert jobs.get(hostile) is None, hostile
        assert decay.get(hostile) is None, hostile
    DatabaseSink(producer.runtime.engine).write([RetrievalFailure.new("no_hit", "vector", DROP).stamped(1)])

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        return int(exited.value.code or 0), captured.out, captured.err

    for hostile in (f"job:{ALWAYS}", f"dj_{ALWAYS}", DROP, f"dj_{DROP}"):
        code, _, err = cli("jobs", "show", hostile)
        assert code == 1 and err.startswith("error: no job "), err
    code, _, err = cli("jobs", "cancel", f"dj_{DROP}")
    assert code == 1 and "no job" in err
    code, _, err = cli("jobs", "list", "--kind", f"seal{ALWAYS}")
    assert code == 2 and "unknown job kind" in err, "a usage error: the valid kinds are listed"
    code, out, _ = cli("jobs", "show", job_id, "--json")
    assert code == 0 and json.loads(out)["dedupe_key"] == DROP

    engine = get_engine(db_url)
    assert {"mem_tree_jobs", "decay_jobs", "memories"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mem_tree_jobs)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(decay_jobs)).scalar_one() == 1
        stored_query = conn.execute(select(memory_retrieval_failures.c.query_text)).scalar_one()
    assert stored_query == DROP
