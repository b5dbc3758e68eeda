"""Every metric the README's Metrics section lists appears in a scrape, with its type and
labels, and nothing appears that it does not list: the exporter as ``memtasks metrics``
serves it (a real process), and a retrieval-failure logger's collector."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from bench.chaos.procs import free_port
from memtasks.domain.clock import DAY_MS, system_clock
from memtasks.domain.gates import RunOutcome
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.metrics import LoggerCollector
from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
from memtasks.storage.budget_repo import BudgetRepo
from memtasks.storage.consolidation_repo import ConsolidationRepo
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import mem_tree_summaries
from memtasks.storage.sweeps_repo import Sweeps
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MEMTASKS = str(Path(sys.executable).parent / "memtasks")
ROW = re.compile(r"^\| `(memtasks_[a-z_]+)` \| (gauge|counter|histogram) \|([^|]*)\|")

Documented = dict[str, tuple[str, frozenset[str]]]


def documented() -> tuple[Documented, Documented]:
    """The README's two tables of metrics: the exporter's, then the logger collector's."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Metrics\n") :]
    section = section[: section.index("\n## ", 1)]
    exporter_part, logger_part = section.split("LoggerCollector", 1)
    tables = []
    for part in (exporter_part, logger_part):
        rows = {}
        for line in part.splitlines():
            match = ROW.match(line)
            if match:
                labels = frozenset(re.findall(r"`([a-z_]+)`", match.group(3)))
                rows[match.group(1)] = (match.group(2), labels)
        tables.append(rows)
    assert len(tables[0]) >= 15 and len(tables[1]) >= 4, "the README's tables were found"
    return tables[0], tables[1]


def scraped(text: str) -> Documented:
    """Each memtasks family of a scrape under its exposition name, with its type and labels."""
    found: Documented = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("memtasks_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
        found[name] = (family.type, labels)
    return found


def test_the_exporter_process_serves_every_documented_metric(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/memtasks.sqlite3"
    engine = get_engine(db_url)
    jobs = MemTreeJobs(engine)
    jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    failing = jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": "c"}))
    assert failing is not None
    claimed = jobs.claim(failing)
    assert claimed is not None and jobs.settle_failed(claimed.lease, "bad", FailureClass.UNRECOVERABLE)
    ConsolidationRepo(engine).record_run(
        started_at_ms=1, finished_at_ms=2, trigger="t", dry_run=False, outcome=RunOutcome.RAN,
        gates_json="{}", duration_ms=1,
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            insert(mem_tree_summaries),
            [
                {
                    "id": "s",
                    "tree_id": "t",
                    "level": 1,
                    "content": "x",
                    "child_ids_json": "[]",
                    "created_at_ms": 1,
                }
            ],
        )
    DatabaseSink(engine).write([RetrievalFailure.new("no_hit", "vector", "q").stamped(1)])
    spend = BudgetRepo(engine, clock=system_clock)
    today = system_clock() // DAY_MS * DAY_MS
    assert spend.admit("job:llm", [("fleet", 10.0)], period_start_ms=today, expires_in_ms=60_000).granted
    spend.settle("job:llm", 2.5)
    sweeps = Sweeps(engine)
    slot = sweeps.claim_slot("recover", 60_000)
    assert slot is not None
    sweeps.finish("recover", slot, ok=True)
    engine.dispose()

    port = free_port()
    log = tmp_path / "metrics.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [MEMTASKS, "metrics", "--port", str(port), "--address", "127.0.0.1"],
            cwd=ROOT,
            env={
                "PATH": "/usr/bin:/bin",
                "MEMTASKS_DATABASE_URL": db_url,
                "MEMTASKS_METRICS_INTERVAL_S": "60",
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    texts: list[str] = []

    def scrape() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                texts.append(reply.read().decode())
        except OSError:
            return False
        return True

    try:
        wait_for(scrape, timeout=60, interval=0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)

    exporter_doc, _ = documented()
    assert scraped(texts[-1]) == exporter_doc


def test_the_logger_collector_serves_every_documented_metric(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/memtasks.sqlite3")
    logger = RetrievalFailureLogger(DatabaseSink(engine), register_atexit=False)
    try:
        logger.log(RetrievalFailure.new("timeout", "graph", "q"))
        assert logger.shutdown(timeout=10)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LoggerCollector(logger))
        text = generate_latest(registry).decode()
    finally:
        logger.shutdown(timeout=1)
    _, logger_doc = documented()
    assert scraped(text) == logger_doc
