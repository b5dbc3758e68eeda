"""memtasks benchmarks: every figure next to a baseline measured in the same run.

    python -m bench.run [--quick] [--only NAME ...]

Writes ``bench/results/latest.json`` (a list of figures: name, value, unit, baseline,
ratio, target, met), a timestamped copy, ``latest.md`` and ``latest.png``. A run with
``--only`` saves ``partial-<time>.json`` and leaves ``latest.*`` as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_BENCH = PG_ADMIN.rsplit("/", 1)[0] + "/memtasks_bench"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
BROKER, LOCKS, COUNTER = f"{REDIS}/11", f"{REDIS}/12", f"{REDIS}/12"
PEERS_PY = ROOT / "bench" / ".venv-peers" / "bin" / "python"
DRAIN_BATCH = 500
"""Jobs per drain claim (``MEMTASKS_DRAIN_BATCH``) in the batched runs: in process, 100 per
claim drained about 7k no-op jobs/s and 500 about 11k/s (fewer round trips per job)."""


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None

    def compare(
        self, baseline: float | None, name: str | None, target: str | None, met: bool | None
    ) -> Figure:
        self.baseline, self.baseline_name, self.target, self.met = baseline, name, target, met
        if baseline:
            self.ratio = round(self.value / baseline, 3)
        return self


FIGURES: list[Figure] = []


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def figure(name: str, value: float, unit: str) -> Figure:
    made = Figure(name, round(value, 3), unit)
    FIGURES.append(made)
    say(f"{name}: {made.value} {unit}")
    return made


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ── environment ──────────────────────────────────────────────────────────────


def reset_database() -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS memtasks_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE memtasks_bench"))
    admin.dispose()


def env(**settings: str) -> dict[str, str]:
    made = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    made.update(
        {
            "PYTHONPATH": str(ROOT),
            "MEMTASKS_DATABASE_URL": settings.pop("database_url", PG_BENCH),
            "MEMTASKS_BROKER_URL": BROKER,
            "MEMTASKS_LOCK_REDIS_URL": LOCKS,
            "MEMTASKS_HANDLERS": "bench.handlers:noop_registry",
            "MEMTASKS_BEAT_INTERVALS": "{}",
            "BENCH_BROKER_URL": BROKER,
            "BENCH_COUNTER_URL": COUNTER,
        }
    )
    made.update({f"MEMTASKS_{k.upper()}": v for k, v in settings.items()})
    return made


@contextmanager
def worker(app: str, environment: dict[str, str], queues: str, processes: int = 2) -> Iterator[None]:
    log = open(RESULTS / f"worker-{app.split('.')[-1]}.log.tmp", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queues,
            "-c",
            str(processes),
            "-P",
            "prefork",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def flush_redis() -> None:
    for url in (BROKER, LOCKS):
        redis.Redis.from_url(url).flushdb()


# ── 1. throughput ────────────────────────────────────────────────────────────


def bare_celery(n: int, end_to_end: bool) -> float:
    from bench.bare_app import app

    flush_redis()
    counter = redis.Redis.from_url(COUNTER)
    counter.delete("bench:bare:done")

    def publish() -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("bench.noop", queue="bare", producer=producer)

    if not end_to_end:
        publish()
    with worker("bench.bare_app", env(), "bare"):
        start = time.monotonic()
        if end_to_end:
            publish()
        wait_until(lambda: int(counter.get("bench:bare:done") or 0) >= n, 600, "bare Celery drain")
        elapsed = time.monotonic() - start
    app.close()
    return n / elapsed


@dataclass
class MemtasksClient:
    """This process's side of a memtasks run: an emptied job table and a publisher."""

    environment: dict[str, str]
    engine: Any
    jobs: Any
    app: Any
    publisher: Any

    @classmethod
    def fresh(cls, database_url: str = PG_BENCH, drain_batch: int = 0) -> MemtasksClient:
        from memtasks.config import load_settings
        from memtasks.storage.engine import get_engine, reset_registry
        from memtasks.storage.mem_tree_queue import MemTreeJobs
        from memtasks.storage.tables import mem_tree_jobs
        from memtasks.worker.conf import client_app
        from memtasks.worker.publisher import CeleryPublisher

        flush_redis()
        environment = env(database_url=database_url, drain_batch=str(drain_batch))
        os.environ.update({k: v for k, v in environment.items() if k.startswith("MEMTASKS_")})
        reset_registry()
        settings = load_settings()
        engine = get_engine(database_url)
        with engine.begin() as conn:
            conn.execute(mem_tree_jobs.delete())
        app = client_app(settings)
        return cls(environment, engine, MemTreeJobs(engine), app, CeleryPublisher(app, settings))

    def done(self) -> int:
        from memtasks.storage.tables import mem_tree_jobs

        with self.engine.connect() as conn:
            stmt = select(func.count()).where(mem_tree_jobs.c.status == "done")
            return int(conn.execute(stmt).scalar_one())


def memtasks_pipeline(n: int, end_to_end: bool, database_url: str = PG_BENCH, drain_batch: int = 0) -> float:
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.services.mem_tree import Followup

    client = MemtasksClient.fresh(database_url, drain_batch)
    new = [NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"c{i}"}) for i in range(n)]

    def publish() -> None:
        for start in range(0, n, 1000):
            ids = client.jobs.enqueue_many(new[start : start + 1000], published=True)
            client.publisher.mem_tree([Followup(i, "extract_chunk") for i in ids if i])

    if not end_to_end:
        publish()
    with worker("memtasks.worker.app", client.environment, "critical,default,bulk,llm,maintenance"):
        start = time.monotonic()
        if end_to_end:
            publish()
        wait_until(lambda: client.done() >= n, 900, "memtasks drain")
        elapsed = time.monotonic() - start
    client.app.close()
    return n / elapsed


def peer(name: str, n: int) -> dict[str, Any] | None:
    if not PEERS_PY.exists():
        say(f"{name}: skipped — run `bash bench/peers/setup.sh` to install the peers")
        return None
    script = ROOT / "bench" / "peers" / f"{name}_bench.py"
    done = subprocess.run(
        [str(PEERS_PY), str(script), "--jobs", str(n), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        say(f"{name}: failed — {done.stderr.strip().splitlines()[-1:]}")
        return None
    return dict(json.loads(done.stdout))


def bench_throughput(n: int, rounds: int) -> None:
    bare_drain, bare_e2e, per_job, per_job_e2e, batched, batched_e2e = [], [], [], [], [], []
    for _ in range(rounds):  # interleaved A/B: the machine's noise hits both alike
        bare_drain.append(bare_celery(n, end_to_end=False))
        per_job.append(memtasks_pipeline(n, end_to_end=False))
        batched.append(memtasks_pipeline(n, end_to_end=False, drain_batch=DRAIN_BATCH))
        bare_e2e.append(bare_celery(n, end_to_end=True))
        per_job_e2e.append(memtasks_pipeline(n, end_to_end=True))
        batched_e2e.append(memtasks_pipeline(n, end_to_end=True, drain_batch=DRAIN_BATCH))
    bare = statistics.median(bare_drain)
    bare_end = statistics.median(bare_e2e)
    figure("bare Celery drain", bare, "jobs/s")
    figure("bare Celery end to end", bare_end, "jobs/s")
    one = figure("memtasks per-job drain", statistics.median(per_job), "jobs/s")
    one.compare(bare, "bare Celery drain", "≥ 0.8× bare Celery", one.value >= 0.8 * bare)
    figure("memtasks per-job end to end", statistics.median(per_job_e2e), "jobs/s").compare(
        bare_end, "bare Celery end to end", None, None
    )
    many = figure(f"memtasks batched drain ({DRAIN_BATCH} per claim)", statistics.median(batched), "jobs/s")
    many.compare(bare, "bare Celery drain", "≥ 2× bare Celery", many.value >= 2 * bare)
    figure("memtasks batched end to end", statistics.median(batched_e2e), "jobs/s").compare(
        bare_end, "bare Celery end to end", None, None
    )
    for name in ("procrastinate", "pgqueuer"):
        result = peer(name, n)
        if result is None:
            continue
        drain = figure(f"{name} drain", float(result["drain_per_s"]), "jobs/s")
        drain.compare(bare, "bare Celery drain", None, None)
        figure(f"{name} batched enqueue", float(result["enqueue_batch_per_s"]), "jobs/s")
        if name == "procrastinate":
            one_vs = figure("memtasks per-job ÷ procrastinate", one.value / drain.value, "×")
            one_vs.compare(None, None, "> 1", one_vs.value > 1)
        else:
            many_vs = figure("memtasks batched ÷ pgqueuer", many.value / drain.value, "×")
            many_vs.compare(None, None, "> 1", many_vs.value > 1)


# ── 2. claim cost as the table grows ─────────────────────────────────────────


def bench_claim_cost(sizes: list[int], claims: int) -> None:
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.storage.engine import get_engine, reset_registry
    from memtasks.storage.mem_tree_queue import MemTreeJobs
    from memtasks.storage.tables import mem_tree_jobs

    reset_registry()
    engine = get_engine(PG_BENCH)
    p50s: dict[int, float] = {}
    for size in sizes:
        with engine.begin() as conn:
            conn.execute(mem_tree_jobs.delete())
            conn.execute(
                text(
                    "INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, status, attempts,"
                    " max_attempts, available_at_ms, created_at_ms, completed_at_ms)"
                    " SELECT 'done:' || g, 'extract_chunk', 4, '{}', 'done', 1, 5, 0, 0, 1"
                    " FROM generate_series(1, :n) g"
                ),
                {"n": size - claims},
            )
            conn.execute(text("ANALYZE mem_tree_jobs"))
        jobs = MemTreeJobs(engine)
        jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"i": i}) for i in range(claims)])
        latencies = []
        for _ in range(claims):
            start = time.perf_counter()
            job = jobs.claim_next()
            assert job is not None
            jobs.settle_done(job.lease)
            latencies.append((time.perf_counter() - start) * 1000)
        p50s[size] = pct(latencies, 0.5)
        p50 = figure(f"claim+settle p50 at {size:,} rows", p50s[size], "ms")
        if size == 10_000:  # the queue engine's hot path: two named statements, two round trips
            p50.compare(None, None, "≤ 1.0 ms", p50.value <= 1.0)
        figure(f"claim+settle p99 at {size:,} rows", pct(latencies, 0.99), "ms")
    small, large = min(sizes), max(sizes)
    growth = figure(f"claim cost {large:,} ÷ {small:,} rows", p50s[large] / p50s[small], "×")
    growth.compare(None, None, "≤ 1.5×", growth.value <= 1.5)


# ── 3. enqueue ───────────────────────────────────────────────────────────────


def bench_enqueue(n: int) -> None:
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.storage.engine import get_engine, reset_registry
    from memtasks.storage.mem_tree_queue import MemTreeJobs
    from memtasks.storage.tables import mem_tree_jobs

    reset_registry()
    engine = get_engine(PG_BENCH)
    with engine.begin() as conn:
        conn.execute(mem_tree_jobs.delete())
    jobs = MemTreeJobs(engine)
    single = min(n, 2000)
    start = time.perf_counter()
    for i in range(single):
        jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"s{i}"}))
    figure("enqueue one at a time", single / (time.perf_counter() - start), "jobs/s")
    new = [NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"b{i}"}) for i in range(n)]
    start = time.perf_counter()
    for part in range(0, n, 1000):
        jobs.enqueue_many(new[part : part + 1000])
    batched = figure("enqueue in batches of 1,000", n / (time.perf_counter() - start), "jobs/s")
    peer_figure = next((f for f in FIGURES if f.name == "pgqueuer batched enqueue"), None)
    if peer_figure is not None:
        baseline, name = peer_figure.value, "pgqueuer batched enqueue (this run)"
    else:
        baseline, name = 19_500.0, "pgqueuer batched enqueue (measured before memtasks)"
    batched.compare(baseline, name, "> pgqueuer", batched.value > baseline)


# ── 4. latency with an idle fleet ────────────────────────────────────────────


def bench_latency(n: int) -> None:
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.services.mem_tree import Followup
    from memtasks.storage.tables import mem_tree_jobs

    client = MemtasksClient.fresh()
    with worker("memtasks.worker.app", client.environment, "critical,default,bulk,llm,maintenance"):
        time.sleep(3)  # the fleet is up and idle before the first job (a measured window, not a sync)
        for i in range(n):
            new = NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"l{i}"})
            job_id = client.jobs.enqueue(new, published=True)
            assert job_id is not None
            client.publisher.mem_tree([Followup(job_id, "extract_chunk")])
            time.sleep(0.02)
        wait_until(lambda: client.done() >= n, 120, "latency jobs done")
    client.app.close()
    with client.engine.connect() as conn:
        rows = conn.execute(
            select(
                mem_tree_jobs.c.started_at_ms - mem_tree_jobs.c.created_at_ms,
                mem_tree_jobs.c.completed_at_ms - mem_tree_jobs.c.created_at_ms,
            )
        ).all()
    start = [float(r[0]) for r in rows]
    end = [float(r[1]) for r in rows]
    p50 = figure("enqueue → start p50 (idle fleet)", pct(start, 0.5), "ms")
    p50.compare(None, None, "≤ 10 ms", p50.value <= 10)
    figure("enqueue → start p95", pct(start, 0.95), "ms")
    figure("enqueue → start p99", pct(start, 0.99), "ms")
    figure("enqueue → done p50", pct(end, 0.5), "ms")
    figure("enqueue → done p95", pct(end, 0.95), "ms")
    figure("enqueue → done p99", pct(end, 0.99), "ms")


# ── 5. consolidation at scale ────────────────────────────────────────────────


def bench_consolidation(messages: int) -> None:
    from memtasks.domain.gates import ConsolidationConfig
    from memtasks.locks import RedisLockGate, redis_client
    from memtasks.services.consolidation import Consolidator
    from memtasks.storage.engine import get_engine, reset_registry
    from memtasks.storage.memory_tables import conversations
    from memtasks.storage.memory_tables import messages as messages_t

    reset_registry()
    engine = get_engine(PG_BENCH)
    old = int(time.time() * 1000) - 60 * 86_400_000
    with engine.begin() as conn:
        conn.execute(messages_t.delete())
        conn.execute(conversations.delete())
        conn.execute(
            text(
                "INSERT INTO conversations (id, channel, sender_id, status, started_at_ms, updated_at_ms,"
                " last_activity_ms) SELECT 'old' || g, 'chat', 's', 'closed', :old, :old, :old"
                " FROM generate_series(1, 1000) g"
            ),
            {"old": old},
        )
        conn.execute(
            text(
                "INSERT INTO conversations (id, channel, sender_id, status, started_at_ms, updated_at_ms,"
                " last_activity_ms) VALUES ('live', 'chat', 's', 'active', :now, :now, :now)"
            ),
            {"now": old + 60 * 86_400_000},
        )
        conn.execute(
            text(
                "INSERT INTO messages (conversation_id, role, content, timestamp_ms)"
                " SELECT 'old' || (g % 1000 + 1), 'user', 'message ' || g, :old FROM generate_series(1, :n) g"
            ),
            {"old": old, "n": messages},
        )
        conn.execute(text("ANALYZE messages"))
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(
                    messages_t.insert().values(
                        conversation_id="live", role="user", content="still talking", timestamp_ms=0
                    )
                )
            waits.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)

    gate = RedisLockGate(redis_client(LOCKS), "memtasks:bench:consolidate", ttl_s=60)
    consolidator = Consolidator(engine, gate, ConsolidationConfig(delete_batch_size=1000))
    thread = threading.Thread(target=writer)
    thread.start()
    start = time.perf_counter()
    report = consolidator.prune("manual")
    duration = time.perf_counter() - start
    stop.set()
    thread.join()
    assert report.messages_pruned == messages, report
    figure(f"prune {messages:,} messages (PostgreSQL)", duration, "s")
    figure("writer p99 wait during the prune", pct(waits, 0.99), "ms")
    worst = figure("writer worst wait during the prune", max(waits), "ms")
    worst.compare(None, None, "≤ 100 ms", worst.value <= 100)


# ── 6. the retrieval-failure logger ──────────────────────────────────────────


def bench_logger(n: int) -> None:
    from memtasks.domain.retrieval import RetrievalFailure
    from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
    from memtasks.storage.engine import get_engine

    record = RetrievalFailure.new("no_hit", "vector", "what did Alice say about Paris?")

    class Null:
        def write(self, batch: Any) -> None:
            return None

    logger = RetrievalFailureLogger(Null(), capacity=n + 1, batch_size=256, register_atexit=False)
    timings = []
    for _ in range(n):
        start = time.perf_counter_ns()
        logger.log(record)
        timings.append((time.perf_counter_ns() - start) / 1000)
    logger.shutdown(timeout=30)
    figure("logger log() p50", pct(timings, 0.5), "µs")
    p99 = figure("logger log() p99", pct(timings, 0.99), "µs")
    p99.compare(None, None, "≤ 10 µs", p99.value <= 10)
    sink = DatabaseSink(get_engine(PG_BENCH))
    batch = [record.stamped(0)] * 256
    start = time.perf_counter()
    for _ in range(max(1, n // 256)):
        sink.write(batch)
    flush = figure(
        "logger flush to PostgreSQL", (max(1, n // 256) * 256) / (time.perf_counter() - start), "records/s"
    )
    flush.compare(None, None, "≥ 20,000 records/s", flush.value >= 20_000)


# ── 7. SQLite vs PostgreSQL ──────────────────────────────────────────────────


def bench_sqlite(n: int, tmp: Path) -> None:
    url = f"sqlite:///{tmp}/bench.sqlite3"
    sqlite = figure("memtasks per-job drain, SQLite", memtasks_pipeline(n, False, database_url=url), "jobs/s")
    pg = next((f for f in FIGURES if f.name == "memtasks per-job drain"), None)
    sqlite.compare(pg.value if pg else None, "memtasks per-job drain (PostgreSQL)", None, None)


# ── output ───────────────────────────────────────────────────────────────────


def save(quick: bool, partial: bool = False) -> None:
    """Save the run; a partial run (``--only``) is kept apart and leaves ``latest.*`` alone."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = [asdict(f) for f in FIGURES]
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    meta = {"quick": quick, "partial": partial, "at": stamp, "cpus": os.cpu_count()}
    (RESULTS / f"{'partial-' if partial else ''}{stamp}.json").write_text(
        json.dumps({"meta": meta, "figures": rows}, indent=2, ensure_ascii=False)
    )
    if partial:
        return
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    lines = [
        f"Run {stamp} ({'quick' if quick else 'full'}, {os.cpu_count()} CPUs)",
        "",
        "| figure | value | unit | baseline | ratio | target | met |",
        "| --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for f in FIGURES:
        base = "" if f.baseline is None else f"{f.baseline:,.1f} ({f.baseline_name})"
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(
            f"| {f.name} | {f.value:,.2f} | {f.unit} | {base} | {'' if f.ratio is None else f.ratio} "
            f"| {f.target or ''} | {met} |"
        )
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    chart([f for f in FIGURES if f.unit == "jobs/s" and ("drain" in f.name or "end to end" in f.name)])


def chart(figures: list[Figure]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no chart")
        return
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(figures) + 1.5))
    names = [f.name for f in figures]
    ax.barh(
        names, [f.value for f in figures], color=["#4c72b0" if "memtasks" in n else "#999999" for n in names]
    )
    ax.invert_yaxis()
    ax.set_xlabel("jobs/s (same run, same machine)")
    ax.set_title("memtasks throughput next to bare Celery and its peers")
    fig.tight_layout()
    fig.savefig(RESULTS / "latest.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    parser.add_argument(
        "--only", nargs="*", default=None, help="throughput sqlite claim enqueue latency consolidation logger"
    )
    args = parser.parse_args()
    quick = args.quick
    only = set(
        args.only or ["throughput", "sqlite", "claim", "enqueue", "latency", "consolidation", "logger"]
    )
    n = 2_000 if quick else 10_000
    reset_database()
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if "throughput" in only:
        bench_throughput(n, rounds=1 if quick else 2)
    if "sqlite" in only:
        bench_sqlite(n, tmp)
    if "claim" in only:
        bench_claim_cost([10_000, 100_000] if quick else [10_000, 100_000, 1_000_000], 300 if quick else 1000)
    if "enqueue" in only:
        bench_enqueue(n)
    if "latency" in only:
        bench_latency(100 if quick else 300)
    if "consolidation" in only:
        bench_consolidation(100_000 if quick else 1_000_000)
    if "logger" in only:
        bench_logger(20_000 if quick else 100_000)
    save(quick, partial=args.only is not None)
    for f in FIGURES:
        met = "" if f.met is None else (" (met)" if f.met else " (MISSED)")
        ratio = "" if f.ratio is None else f" ratio {f.ratio}"
        print(f"{f.name}: {f.value:,.2f} {f.unit}{ratio}{met}")


if __name__ == "__main__":
    main()
