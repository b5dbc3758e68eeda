"""The web console at a million job rows: how long each page takes at the server.

    python -m bench.console [--rows 1000000] [--rounds 30]

Fills ``mem_tree_jobs`` of a private schema on PostgreSQL with ``--rows`` rows (90 % done,
5 % failed, 3 % ready, 1 % running, 1 % cancelled, six kinds, one finishing every 50 ms: the
last hour holds 72,000 of them) and 10,000 decay jobs, runs ``VACUUM ANALYZE``, serves the
console with uvicorn and asks for each page ``--rounds`` times, the pages interleaved. The
time is the console's own ``Server-Timing`` (request in → response start); the overview's
two-second cache is turned off, so every queues page reads the tables. The first request
of each page (cold: the chart series reads its hour) is reported apart.

Prints the figures and writes ``bench/results/console.json``; the goal is 200 ms at p95.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.scrape import FILL_DECAY
from memtasks.config import load_settings
from memtasks.storage.engine import get_engine, reset_registry

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GOAL_MS = 200.0
SPACING_MS = 50

FILL = """
INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, dedupe_key, status, attempts, max_attempts,
    available_at_ms, created_at_ms, started_at_ms, completed_at_ms, failure_class, failure_reason,
    last_error, lease_token, locked_until_ms, updated_at_ms, claimed_by)
SELECT 'job:' || lpad(to_hex(i), 12, '0'),
    (ARRAY['seal', 'flush_stale', 'append_buffer', 'extract_chunk', 'reembed_backfill',
        'seal_document'])[1 + i % 6],
    1 + i % 4, '{"tree_id": "t", "level": 0}', 'key-' || i, s.status,
    CASE WHEN s.status = 'ready' THEN i % 2 ELSE 1 END, 5,
    :base + i * :spacing - 40, :base + i * :spacing - 50,
    CASE WHEN s.status IN ('done', 'failed', 'running') THEN :base + i * :spacing - 20 END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN :base + i * :spacing END,
    CASE WHEN s.status = 'failed' THEN (ARRAY['transient','unrecoverable'])[1 + i % 2] END,
    CASE WHEN s.status = 'failed' THEN 'the model said no' END,
    CASE WHEN s.status = 'failed' THEN 'the model said no' END,
    CASE WHEN s.status = 'running' THEN 'token' END,
    CASE WHEN s.status = 'running' THEN :base + i * :spacing + 300000 END,
    :base + i * :spacing, 'bench-host:1'
FROM generate_series(1, :rows) AS i,
LATERAL (SELECT CASE WHEN i % 100 < 90 THEN 'done' WHEN i % 100 < 95 THEN 'failed'
    WHEN i % 100 < 98 THEN 'ready' WHEN i % 100 < 99 THEN 'running' ELSE 'cancelled' END AS status) AS s
"""


def pages(rows: int) -> dict[str, str]:
    deep = f"job:{rows // 10:012x}"  # a cursor 90 % of the way down
    some_job = f"job:{rows // 2 + 5:012x}"  # a failed one
    held = rows // 3 // 100 * 100 + 95  # a ready job: its dedupe key is held
    return {
        "queues": "/queues",
        "queues table (htmx)": "/queues/table",
        "api queues": "/api/queues",
        "api series": "/api/series",
        "jobs, newest": "/jobs",
        "jobs, failed": "/jobs?status=failed",
        "jobs, one kind failed unrecoverable": "/jobs?kind=seal&status=failed&failure_class=unrecoverable",
        "jobs, a queue": "/jobs?queue=bulk",
        "jobs, 90 % down (keyset)": f"/jobs?before={deep}",
        "jobs, by a held dedupe key": f"/jobs?q=key-{held}",
        "job page": f"/jobs/{some_job}",
        "decay jobs": "/jobs?table=decay",
        "maintenance": "/maintenance",
        "failures": "/failures?hours=24",
        "trees": "/trees",
    }


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def server_ms(response: httpx.Response) -> float:
    found = re.fullmatch(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if found is None or response.status_code != 200:
        raise RuntimeError(f"{response.url}: {response.status_code} {response.text[:200]}")
    return float(found.group(1))


def run(rows: int, rounds: int) -> dict[str, Any]:
    from memtasks.services import console as console_module
    from memtasks.web.app import create_console

    schema = f"bench_console_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = (
        make_url(PG)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        engine = get_engine(url)  # migrated
        with engine.connect() as conn:
            now = int(
                conn.execute(text("SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)")).scalar_one()
            )
        base = now - rows * SPACING_MS - 60_000
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(FILL), {"base": base, "rows": rows, "spacing": SPACING_MS})
            conn.execute(text(FILL_DECAY), {"base": base})
        vacuum = create_engine(url, isolation_level="AUTOCOMMIT")
        with vacuum.connect() as conn:
            conn.execute(text("VACUUM ANALYZE mem_tree_jobs"))
            conn.execute(text("VACUUM ANALYZE decay_jobs"))
        vacuum.dispose()
        fill_s = time.perf_counter() - t0
        print(f"filled {rows:,} job rows and 10,000 decay jobs in {fill_s:.1f} s")

        console_module.OVERVIEW_TTL_MS = 0  # every queues page reads the tables
        server, thread, base_url = serve(create_console(load_settings(database_url=url)))
        targets = pages(rows)
        cold: dict[str, float] = {}
        warm: dict[str, list[float]] = {name: [] for name in targets}
        with httpx.Client(base_url=base_url, timeout=60) as client:
            for name, path in targets.items():
                cold[name] = server_ms(client.get(path))
            for _ in range(rounds):
                for name, path in targets.items():
                    warm[name].append(server_ms(client.get(path)))
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        reset_registry()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    figures: dict[str, Any] = {
        "rows": rows,
        "rounds": rounds,
        "goal_p95_ms": GOAL_MS,
        "pages": {
            name: {
                "path": targets[name],
                "cold_ms": round(cold[name], 1),
                "median_ms": round(statistics.median(v), 1),
                "p95_ms": round(sorted(v)[max(0, round(0.95 * len(v)) - 1)], 1),
                "max_ms": round(max(v), 1),
            }
            for name, v in warm.items()
        },
    }
    figures["ok"] = all(p["p95_ms"] <= GOAL_MS for p in figures["pages"].values())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "console.json")
    args = parser.parse_args(argv)
    figures = run(args.rows, args.rounds)
    print(f"{'page':<38} {'cold':>8} {'median':>8} {'p95':>8} {'max':>8}  (ms at the server)")
    for name, p in figures["pages"].items():
        print(f"{name:<38} {p['cold_ms']:>8} {p['median_ms']:>8} {p['p95_ms']:>8} {p['max_ms']:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print("console: " + ("every page within 200 ms at p95" if figures["ok"] else "SLOWER than 200 ms at p95"))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
