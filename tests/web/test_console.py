"""The web console over real tables (SQLite and PostgreSQL), served by uvicorn and used over
HTTP: what it shows is what the tables hold, its actions change the rows and are recorded,
and its guard refuses what it must."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select, text

from memtasks.domain.decay import DecayKind, DecaySpec, SummaryMethod
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.services.retrieval_failures import DatabaseSink
from memtasks.storage.archive_repo import Stamp
from memtasks.storage.consolidation_repo import ConsolidationRepo
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import messages
from memtasks.storage.sweeps_repo import Sweeps
from memtasks.storage.tables import operator_actions
from memtasks.web.app import Guard
from memtasks.web.security import listen_problem
from tests.helpers import old_closed_conversation
from tests.web.conftest import RunningConsole

pytestmark = pytest.mark.integration

Start = Callable[..., RunningConsole]


def _jobs(console: RunningConsole) -> MemTreeJobs:
    return MemTreeJobs(get_engine(console.settings.resolved_database_url))


def _fail(jobs: MemTreeJobs, kind: JobKind, n: int) -> list[str]:
    ids = jobs.enqueue_many(
        [
            NewJob(
                kind,
                {"chunk_id": f"bad{i}"}
                if kind is JobKind.EXTRACT_CHUNK
                else {"tree_id": f"f{i}", "level": 0},
            )
            for i in range(n)
        ]
    )
    for _ in ids:
        job = jobs.claim_next(kinds=[kind])
        assert job is not None
        jobs.settle_failed(job.lease, "boom: the input was bad", FailureClass.UNRECOVERABLE)
    return ids


def _cell(html: str, kind: str, col: str) -> str:
    row = re.search(rf'<tr data-kind="{kind}"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None, f"no row for {kind}"
    cell = re.search(rf'data-col="{col}">(.*?)</td>', row.group(1), re.S)
    assert cell is not None
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


def test_the_queues_page_and_api_show_what_the_tables_hold(start_console: Start) -> None:
    console = start_console()
    jobs = _jobs(console)
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}) for i in range(3)])
    _fail(jobs, JobKind.EXTRACT_CHUNK, 2)
    running = jobs.claim_next(kinds=[JobKind.SEAL])
    assert running is not None

    with console.client() as client:
        page = client.get("/queues")
        assert page.status_code == 200
        assert re.fullmatch(r"app;dur=\d+\.\d", page.headers["server-timing"])
        assert (_cell(page.text, "seal", "ready"), _cell(page.text, "seal", "running")) == ("2", "1")
        assert _cell(page.text, "extract_chunk", "failed") == "2"
        assert 'hx-get="/queues/table"' in page.text and "/static/htmx.min.js" in page.text
        api = client.get("/api/queues").json()
        rows = {r["kind"]: r for r in api["kinds"]}
        assert (rows["seal"]["queue"], rows["seal"]["ready"], rows["seal"]["running"]) == ("critical", 2, 1)
        assert rows["extract_chunk"]["failed"] == 2
        fragment = client.get("/queues/table")
        assert (
            fragment.status_code == 200
            and "<html" not in fragment.text
            and 'data-kind="seal"' in fragment.text
        )
        assert client.get("/static/htmx.min.js").status_code == 200
        assert client.get("/static/uPlot.iife.min.js").status_code == 200
        series = client.get("/api/series").json()
        assert len(series["minute_ms"]) == 60 and len(series["finished"]) == 60
        assert client.get("/api/series?queue=nope").status_code == 400


def test_the_queues_page_and_api_show_the_fair_share_lanes(start_console: Start) -> None:
    console = start_console()
    jobs = _jobs(console)
    jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"agent_id": "big"}) for _ in range(7)])
    jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": "x"}, fair_key="small") for _ in range(2)])
    with console.client() as client:
        lanes = client.get("/api/queues").json()["lanes"]
        assert [(n["lane"], n["ready"], n["due"]) for n in lanes] == [("big", 7, 7), ("small", 2, 2)]
        page = client.get("/queues")
        row = re.search(r'<tr data-lane="big">.*?</tr>', page.text, re.S)
        assert row is not None and ">7<" in row.group(0)


def test_jobs_are_paged_by_keyset_newest_first_and_filtered(start_console: Start) -> None:
    console = start_console()
    jobs = _jobs(console)
    made = jobs.enqueue_many(
        [NewJob(JobKind.APPEND_BUFFER, {"tree_id": "t", "level": 0, "item_id": f"i{i}"}) for i in range(120)]
    )
    failed = _fail(jobs, JobKind.EXTRACT_CHUNK, 3)
    keyed = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "k", "level": 0}, dedupe_key="seal:k"))
    assert keyed is not None

    with console.client() as client:
        seen: list[str] = []
        url: str | None = "/api/jobs?kind=append_buffer"
        while url is not None:
            body = client.get(url).json()
            seen += [j["id"] for j in body["jobs"]]
            url = body["next"]
        assert seen == sorted(made, reverse=True)  # every job once, newest first
        page = client.get("/jobs?kind=append_buffer")
        assert page.text.count('<tr data-id="') == 50 and 'id="next-page"' in page.text

        only_failed = client.get("/api/jobs?status=failed").json()["jobs"]
        assert sorted(j["id"] for j in only_failed) == sorted(failed)
        assert client.get("/api/jobs?failure_class=unrecoverable&queue=bulk").json()["jobs"]
        assert not client.get("/api/jobs?failure_class=transient").json()["jobs"]
        assert [j["id"] for j in client.get("/api/jobs", params={"q": "seal:k"}).json()["jobs"]] == [keyed]
        assert [j["id"] for j in client.get("/api/jobs", params={"q": failed[0]}).json()["jobs"]] == [
            failed[0]
        ]
        assert not client.get("/api/jobs?older_than_min=60").json()["jobs"]

        bad = client.get("/api/jobs?status=sleeping")
        assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]
        assert client.get("/jobs?kind=nope").status_code == 400
        assert client.get("/api/jobs?older_than_min=-3").status_code == 400


def test_retry_and_cancel_change_the_row_and_are_recorded_with_who_and_when(start_console: Start) -> None:
    console = start_console()
    jobs = _jobs(console)
    [failed] = _fail(jobs, JobKind.EXTRACT_CHUNK, 1)
    ready = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "c", "level": 0}))
    assert ready is not None

    with console.session() as (client, token):
        page = client.get(f"/jobs/{failed}")
        assert (
            page.status_code == 200 and 'id="retry"' in page.text and "boom: the input was bad" in page.text
        )
        assert '"chunk_id": "bad0"' in page.text  # the payload
        retried = client.post(f"/jobs/{failed}/retry", data={"csrf_token": token}, follow_redirects=False)
        assert retried.status_code == 303
        row = jobs.get(failed)
        assert row is not None and row.status.value == "ready" and row.attempts == 0

        cancelled = client.post(f"/api/jobs/{ready}/cancel", headers={"X-CSRF-Token": token})
        assert cancelled.json() == {"id": ready, "cancelled": True}
        row = jobs.get(ready)
        assert row is not None and row.status.value == "cancelled"

        shown = client.get(f"/api/jobs/{failed}").json()
        assert [(a["action"], a["actor"], a["affected"]) for a in shown["operator_actions"]] == [
            ("retry", "anonymous@127.0.0.1", 1)
        ]
        assert "anonymous@127.0.0.1" in client.get(f"/jobs/{failed}").text
        assert client.get("/jobs/job:00000000-0000-7000-8000-000000000000").status_code == 404
        assert client.post(f"/api/jobs/{failed}/explode", headers={"X-CSRF-Token": token}).status_code == 404


def test_an_action_without_the_token_or_from_another_site_is_refused_and_changes_nothing(
    start_console: Start,
) -> None:
    console = start_console()
    jobs = _jobs(console)
    [failed] = _fail(jobs, JobKind.EXTRACT_CHUNK, 1)
    with console.session() as (client, token):
        for refused in (
            client.post(f"/jobs/{failed}/retry", data={}),
            client.post(f"/jobs/{failed}/retry", data={"csrf_token": "forged-" + token}),
            client.post(f"/api/jobs/{failed}/retry"),
            client.post(
                f"/jobs/{failed}/retry",
                data={"csrf_token": token},
                headers={"Origin": "https://evil.example"},
            ),
            client.post(
                f"/jobs/{failed}/retry", data={"csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
            ),
        ):
            assert refused.status_code == 403, refused.text
    with console.client() as stranger:  # a token without its cookie
        assert stranger.post(f"/api/jobs/{failed}/retry", headers={"X-CSRF-Token": token}).status_code == 403
    row = jobs.get(failed)
    assert row is not None and row.status.value == "failed"


def test_a_bulk_requeue_names_how_many_and_takes_only_what_was_confirmed(start_console: Start) -> None:
    console = start_console()
    jobs = _jobs(console)
    _fail(jobs, JobKind.EXTRACT_CHUNK, 4)
    _fail(jobs, JobKind.SEAL, 2)
    with console.session() as (client, token):
        confirm = client.get("/requeue?kind=extract_chunk&status=failed")
        assert re.search(r"requeues <b>4</b> failed jobs", confirm.text)
        stale = client.post(
            "/requeue", data={"csrf_token": token, "confirm_count": "3", "kind": "extract_chunk"}
        )
        assert stale.status_code == 409 and "matches 4 failed jobs, not the 3" in stale.text
        done = client.post(
            "/requeue",
            data={"csrf_token": token, "confirm_count": "4", "kind": "extract_chunk", "table": "mem-tree"},
            follow_redirects=False,
        )
        assert done.status_code == 303 and "requeued=4" in done.headers["location"]
    with get_engine(console.settings.resolved_database_url).connect() as conn:
        by = dict(
            conn.execute(
                text("SELECT kind, count(*) FROM mem_tree_jobs WHERE status = 'failed' GROUP BY kind")
            ).all()
        )
        [(actor, action, target, affected)] = conn.execute(
            text("SELECT actor, action, target, affected FROM operator_actions")
        ).all()
    assert by == {"seal": 2}  # the other kind's failures stay failed
    assert (actor, action, affected) == ("anonymous@127.0.0.1", "requeue", 4)
    assert json.loads(target)["kind"] == "extract_chunk"


def test_a_read_only_console_shows_and_never_changes(start_console: Start) -> None:
    seeded = start_console()
    [failed] = _fail(_jobs(seeded), JobKind.EXTRACT_CHUNK, 1)
    console = start_console(web_read_only=True)
    with console.session() as (client, token):
        page = client.get(f"/jobs/{failed}")
        assert page.status_code == 200 and 'id="retry"' not in page.text and "read-only" in page.text
        refused = client.post(f"/api/jobs/{failed}/retry", headers={"X-CSRF-Token": token})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    row = _jobs(seeded).get(failed)
    assert row is not None and row.status.value == "failed"


def test_basic_auth_is_asked_for_and_names_the_actor(start_console: Start) -> None:
    console = start_console(web_basic_auth="ops:s3cret,viewer:v1ew")
    with console.client() as client:
        assert client.get("/queues").status_code == 401
        assert client.get("/queues", auth=("ops", "wrong")).status_code == 401
        assert client.get("/api/queues", auth=("nobody", "s3cret")).status_code == 401
        assert client.get("/api/session", auth=("ops", "s3cret")).json()["actor"] == "ops"
        assert "s3cret" not in client.get("/queues", auth=("ops", "s3cret")).text


def _call_from(app: Any, host: str, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            return await client.get(path)

    return anyio.run(call)


def test_without_authentication_only_loopback_clients_are_answered() -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    open_guard = Guard(ok, users=None)
    assert _call_from(open_guard, "127.0.0.1", "/queues").status_code == 200
    remote = _call_from(open_guard, "10.1.2.3", "/api/queues")
    assert remote.status_code == 403 and "loopback" in remote.json()["error"]
    assert _call_from(Guard(ok, users={"ops": "pw"}), "10.1.2.3", "/queues").status_code == 401

    assert listen_problem("127.0.0.1", None) is None and listen_problem("::1", None) is None
    assert listen_problem("0.0.0.0", {"ops": "pw"}) is None
    problem = listen_problem("0.0.0.0", None)
    assert problem is not None and "MEMTASKS_WEB_BASIC_AUTH" in problem


def test_an_llm_summary_waiting_for_an_operator_says_what_to_sign_and_how(start_console: Start) -> None:
    console = start_console(llm_model="m-1", llm_prompt_template_hash="sha256:abc")
    engine = get_engine(console.settings.resolved_database_url)
    decay = DecayJobs(engine)
    waiting = decay.enqueue(
        DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_a", "mem_b"), SummaryMethod.LLM_SUMMARY),
        created_by="op",
    )
    plain = decay.enqueue(DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_c",)), created_by="op")
    with console.client() as client:
        page = client.get(f"/jobs/{waiting}")
        assert page.status_code == 200 and 'id="attestation"' in page.text
        assert f"memtasks decay run {waiting} --attestation FILE" in page.text
        document = json.loads(
            html.unescape(re.search(r'<pre id="attestation-document">(.*?)</pre>', page.text, re.S).group(1))  # type: ignore[union-attr]
        )
        assert (document["job_id"], document["model"], document["prompt_template_hash"]) == (
            waiting,
            "m-1",
            "sha256:abc",
        )
        assert document["purpose"] == "decay.llm_summary" and "signature" not in document
        assert 'id="attestation"' not in client.get(f"/jobs/{plain}").text
        decay_page = client.get("/jobs?table=decay")
        waiting_row = re.search(rf'<tr data-id="{waiting}".*?</tr>', decay_page.text, re.S)
        assert waiting_row is not None and "waiting for an attestation" in waiting_row.group(0)
        plain_row = re.search(rf'<tr data-id="{plain}".*?</tr>', decay_page.text, re.S)
        assert plain_row is not None and "waiting for an attestation" not in plain_row.group(0)
        listed = client.get("/api/jobs?table=decay&status=pending").json()["jobs"]
        assert {j["id"] for j in listed} == {waiting, plain}


def test_maintenance_shows_sweeps_the_ledger_and_a_plan_on_demand(start_console: Start) -> None:
    console = start_console()
    engine = get_engine(console.settings.resolved_database_url)
    sweeps = Sweeps(engine)
    slot = sweeps.claim_slot("recover", 60_000)
    assert slot is not None
    sweeps.finish("recover", slot, ok=True, detail="requeued 0")
    with console.client() as client:
        page = client.get("/maintenance")
        assert page.status_code == 200 and 'data-sweep="recover"' in page.text and "requeued 0" in page.text
        assert "no consolidation yet" in page.text
        plan = client.get("/maintenance/plan")
        assert plan.status_code == 200 and "would archive" in plan.text and "gate" in plan.text
        assert "restorable for 7 days" in plan.text
    with engine.connect() as conn:  # the plan wrote nothing
        assert conn.execute(text("SELECT count(*) FROM consolidation_runs")).scalar_one() == 0


def test_an_archived_run_is_listed_and_restored_only_with_the_token(start_console: Start) -> None:
    console = start_console()
    engine = get_engine(console.settings.resolved_database_url)
    old_closed_conversation(engine, "old", 4)
    repo = ConsolidationRepo(engine)
    run_id = repo.start_run(started_at_ms=1_000, trigger="manual", dry_run=False, gates_json="{}")
    assert repo.prune_messages(10, 1_000, archive=Stamp(1_000, run_id)) == 4

    with console.session() as (client, token):
        page = client.get("/maintenance")
        row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', page.text, re.S)
        assert row is not None and ">4<" in row.group(0) and "restore" in row.group(0)
        form = {"scope": "run", "key": str(run_id)}
        forged = client.post("/archive/restore", data=form, follow_redirects=False)
        assert forged.status_code == 403
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 0
        bad = client.post("/archive/restore", data={**form, "key": "x", "csrf_token": token})
        assert bad.status_code == 400 and "invalid run id" in bad.text
        done = client.post("/archive/restore", data={**form, "csrf_token": token}, follow_redirects=False)
        assert done.status_code == 303 and "restored=4" in done.headers["location"]
        after = client.get(done.headers["location"])
        assert (
            "restored 4 rows" in after.text and "no consolidation run has rows in the archive" in after.text
        )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 4
        action = conn.execute(select(operator_actions)).one()
    assert (action.action, action.via, action.affected) == ("restore", "web", 4)
    assert json.loads(action.target) == {"run": str(run_id)}


def test_retrieval_failures_are_reported_by_type_and_strategy(start_console: Start) -> None:
    console = start_console()
    engine = get_engine(console.settings.resolved_database_url)
    DatabaseSink(engine).write(
        [RetrievalFailure.new("no_hit", "vector", f"q{i}", latency_ms=10 * i) for i in range(3)]
        + [RetrievalFailure.new("timeout", "graph", "slow one", latency_ms=900)]
    )
    with console.client() as client:
        page = client.get("/failures?hours=24")
        assert page.status_code == 200
        assert re.search(r'<b id="failures-total">4</b>', page.text)
        assert "no_hit" in page.text and "vector" in page.text and "timeout" in page.text
        assert client.get("/failures?hours=5").status_code == 400


def _tree(engine: Any) -> None:
    """Tree ``t1``: chunks c1–c4 under summaries s1 (c1, c2) and s2 (c3, c4), both under s3;
    chunk c5 waiting in the level-0 buffer."""
    from memtasks.storage.memory_tables import (
        mem_tree_buffer_items,
        mem_tree_buffers,
        mem_tree_chunks,
        mem_tree_summaries,
    )

    def chunk(i: int, summary: str | None) -> dict[str, Any]:
        return {
            "id": f"c{i}",
            "tree_id": "t1",
            "source_id": "src",
            "content": f"chunk number {i}",
            "summary_id": summary,
            "created_at_ms": i,
        }

    with engine.begin() as conn:
        conn.execute(
            mem_tree_chunks.insert(),
            [chunk(1, "s1"), chunk(2, "s1"), chunk(3, "s2"), chunk(4, "s2"), chunk(5, None)],
        )
        conn.execute(
            mem_tree_summaries.insert(),
            [
                {
                    "id": "s1",
                    "tree_id": "t1",
                    "level": 1,
                    "content": "about 1 and 2",
                    "child_ids_json": '["c1", "c2"]',
                    "parent_id": "s3",
                    "created_at_ms": 10,
                },
                {
                    "id": "s2",
                    "tree_id": "t1",
                    "level": 1,
                    "content": "about 3 and 4",
                    "child_ids_json": '["c3", "c4"]',
                    "parent_id": "s3",
                    "created_at_ms": 11,
                },
                {
                    "id": "s3",
                    "tree_id": "t1",
                    "level": 2,
                    "content": "about all four",
                    "child_ids_json": '["s1", "s2"]',
                    "parent_id": None,
                    "created_at_ms": 12,
                },
            ],
        )
        conn.execute(
            mem_tree_buffers.insert(), [{"tree_id": "t1", "level": 0, "opened_at_ms": 5, "updated_at_ms": 5}]
        )
        conn.execute(
            mem_tree_buffer_items.insert(), [{"tree_id": "t1", "level": 0, "item_id": "c5", "added_at_ms": 5}]
        )


def test_a_tree_is_shown_level_by_level_down_to_its_chunks_and_a_chunk_up_to_its_root(
    start_console: Start,
) -> None:
    console = start_console()
    _tree(get_engine(console.settings.resolved_database_url))
    with console.client() as client:
        listed = client.get("/trees")
        assert 'href="/trees/t1"' in listed.text
        page = client.get("/trees/t1")
        assert page.status_code == 200
        levels = re.sub(r"<[^>]+>", "", re.search(r'<p id="levels">(.*?)</p>', page.text, re.S).group(1))  # type: ignore[union-attr]
        assert (
            "level 2: 1 summaries" in levels
            and "level 1: 2 summaries" in levels
            and "level 0: 5 chunks" in levels
        )
        roots = re.findall(r'data-node="([^"]+)"', page.text)
        assert roots == ["s3", "c5"]  # the root summary, then the chunk still in its buffer

        reached: list[str] = []
        frontier = ["s3"]
        while frontier:
            node = frontier.pop()
            below = re.findall(
                r'data-node="([^"]+)" data-level="(\d+)"', client.get(f"/nodes/{node}/children").text
            )
            for child, level in below:
                (frontier if level != "0" else reached).append(child)
        assert sorted(reached) == ["c1", "c2", "c3", "c4"]

        path = client.get("/nodes/c3/path")
        assert re.findall(r'<li data-node="([^"]+)"', path.text) == ["c3", "s2", "s3"]
        assert client.get("/trees/nope").status_code == 404
        assert client.get("/nodes/nope/path").status_code == 404


def test_memtasks_web_refuses_to_listen_beyond_loopback_without_authentication(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/m.sqlite3"
    get_engine(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")} | {
        "MEMTASKS_DATABASE_URL": url
    }
    refused = subprocess.run(
        [sys.executable, "-c", "from memtasks.command import main; main()", "web", "--address", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "without authentication" in refused.stderr and "MEMTASKS_WEB_BASIC_AUTH" in refused.stderr
    malformed = subprocess.run(
        [sys.executable, "-c", "from memtasks.command import main; main()", "web"],
        env=env | {"MEMTASKS_WEB_BASIC_AUTH": "nopassword"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert malformed.returncode == 2 and "MEMTASKS_WEB_BASIC_AUTH" in malformed.stderr
    assert "nopassword" not in malformed.stderr  # a secret is never echoed
