"""The console in a real browser: Debian's headless Chromium driven through its chromedriver
(Selenium, nothing downloaded), against a real fleet — `celery worker` and `celery beat`
processes, Redis, PostgreSQL. Each test saves screenshots under its output directory (and
under ``CONSOLE_SCREENSHOTS`` when set: the README's pictures come from there)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.tree import extract_chunk_job
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import mem_tree_chunks
from memtasks.storage.tree_repo import NewChunk, TreeStore
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.web.conftest import RunningConsole

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_BEAT = {"dispatch_due": 1.0, "recover": 1.0, "flush_stale": 2.0}


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver"
            " (apt-get install chromium chromium-driver; `make test` installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()


class Shots:
    def __init__(self, browser: Any, where: Path) -> None:
        self.browser = browser
        self.where = where
        self.extra = (
            Path(os.environ["CONSOLE_SCREENSHOTS"]) if os.environ.get("CONSOLE_SCREENSHOTS") else None
        )

    def take(self, name: str) -> Path:
        self.where.mkdir(parents=True, exist_ok=True)
        path = self.where / f"{name}.png"
        assert self.browser.save_screenshot(str(path)), f"no screenshot {name}"
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)
        return path


def _text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def _wait(browser: Any, condition: Callable[[Any], Any], what: str, timeout: float = 30) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The queue table replaces itself every 5 s: an element read across a swap goes stale.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(browser, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(
        condition, message=what
    )


def _status(db_url: str, job_id: str) -> str:
    row = MemTreeJobs(get_engine(db_url)).get(job_id)
    assert row is not None
    return row.status.value


def _failed_probes(db_url: str, names: list[str]) -> list[str]:
    """Probe jobs (they succeed when run) stored as failed, as if their input had been bad."""
    jobs = MemTreeJobs(get_engine(db_url))
    ids = [i for i in jobs.enqueue_many([NewJob(JobKind.REEMBED_BACKFILL, {"probe": n}) for n in names]) if i]
    for _ in ids:
        job = jobs.claim_next(kinds=[JobKind.REEMBED_BACKFILL])
        assert job is not None
        jobs.settle_failed(job.lease, "the embedding service said no", FailureClass.UNRECOVERABLE)
    return ids


def test_counts_retry_cancel_and_a_bulk_requeue_from_the_browser_reach_the_fleet(
    pg_schema: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    serve_console: Callable[..., RunningConsole],
    browser: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    db_url = pg_schema
    shots = Shots(browser, tmp_path / "screenshots")
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, beat=FAST_BEAT)
    solo, *bulk = _failed_probes(db_url, ["solo", "bulk1", "bulk2"])
    waiting = MemTreeJobs(get_engine(db_url)).enqueue(NewJob(JobKind.SEAL, {"tree_id": "later", "level": 0}))
    assert waiting is not None
    console = serve_console(db_url)

    # The queues page shows what the tables hold.
    browser.get(f"{console.base}/queues")
    _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#queues"), "the queue table")
    _wait(
        browser,
        lambda b: (
            _text(b, 'tr[data-kind="reembed_backfill"] td[data-col="failed"]') == "3"
            and _text(b, 'tr[data-kind="seal"] td[data-col="ready"]') == "1"
        ),
        "the queues page shows 3 failed probes and 1 ready seal",
        timeout=5,
    )
    _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#chart-throughput canvas"), "the charts drawn")
    shots.take("queues")

    # Cancel the ready job from its page.
    browser.get(f"{console.base}/jobs/{waiting}")
    browser.find_element(By.ID, "cancel").click()
    _wait(browser, lambda b: _text(b, "#job-status") == "cancelled", "the job page says cancelled")
    assert _status(db_url, waiting) == "cancelled"

    # An action without the anti-forgery token is refused, in the browser too.
    refused = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/jobs/{solo}/retry', {{method: 'POST'}}).then(r => done(r.status));"
    )
    assert refused == 403 and _status(db_url, solo) == "failed"

    # Retry one failed job from its page.
    browser.get(f"{console.base}/jobs/{solo}")
    assert "the embedding service said no" in browser.page_source
    shots.take("job-failed")
    browser.find_element(By.ID, "retry").click()
    _wait(browser, lambda b: _text(b, "#job-status") == "ready", "the job page says ready")
    assert "anonymous@127.0.0.1" in _text(browser, "#operator-actions")

    # Requeue the other failed probes, confirming how many.
    browser.get(f"{console.base}/jobs?kind=reembed_backfill&status=failed")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs tr[data-id]")) == 2
    shots.take("jobs-failed")
    browser.find_element(By.ID, "requeue-link").click()
    _wait(
        browser, lambda b: "requeues 2 failed jobs" in _text(b, "#requeue-count"), "the confirmation names 2"
    )
    browser.find_element(By.ID, "confirm-requeue").click()
    _wait(browser, lambda b: "2 failed jobs requeued" in _text(b, "#requeued"), "the requeue reported")

    # A worker runs every job the browser sent back.
    fleet.worker(concurrency=2)
    fleet.beat()
    probes = redis.Redis.from_url(lock_url, decode_responses=True)
    wait_until(
        lambda: all(_status(db_url, i) == "done" for i in [solo, *bulk]), 60, "the three probes done", fleet
    )
    assert [probes.get(f"probe:{n}:ok") for n in ("solo", "bulk1", "bulk2")] == ["1", "1", "1"]
    browser.get(f"{console.base}/queues")
    # Jobs count as done in the last hour once their completion is 10 s old; the table
    # refreshes itself every 5 s (htmx), without reloading the page.
    _wait(
        browser,
        lambda b: _text(b, 'tr[data-kind="reembed_backfill"] td[data-col="done_last_hour"]') == "3",
        "the queues page counts the three done",
        timeout=60,
    )
    _wait(
        browser,
        lambda b: _text(b, 'tr[data-kind="reembed_backfill"] td[data-col="failed"]') == "0",
        "no failed probe left",
        timeout=5,
    )
    # The charts follow the queue picked (the probes ran on `bulk`).
    drawn = int(browser.execute_script("return Number(document.body.dataset.chartsDrawn || 0)"))
    Select(browser.find_element(By.ID, "chart-queue")).select_by_visible_text("bulk")
    _wait(
        browser,
        lambda b: int(b.execute_script("return Number(document.body.dataset.chartsDrawn || 0)")) > drawn,
        "the charts redrawn for the bulk queue",
    )
    finished = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/series?queue=bulk').then(r => r.json()).then(s => done(s.finished.reduce((a, b) => a + b, 0)));"
    )
    assert finished == 3
    shots.take("queues-after")


def test_a_sealed_trees_page_reaches_every_chunk(
    pg_schema: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    serve_console: Callable[..., RunningConsole],
    browser: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from selenium.webdriver.common.by import By

    db_url = pg_schema
    shots = Shots(browser, tmp_path / "screenshots")
    fleet.env = fleet_env(
        database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, beat=FAST_BEAT, tree_fanout=4
    )
    chunks = [
        NewChunk(f"k{i:02d}", "tree-a", f"src{i % 2}", f"Note {i}: the agent met Ada in Berlin.")
        for i in range(16)
    ]
    TreeStore(get_engine(db_url)).add_chunks(chunks)
    MemTreeJobs(get_engine(db_url)).enqueue_many([extract_chunk_job(c.id) for c in chunks])
    fleet.worker(concurrency=2)
    fleet.beat()

    def sealed() -> bool:
        with get_engine(db_url).connect() as conn:
            loose = conn.execute(
                select(func.count()).where(
                    mem_tree_chunks.c.tree_id == "tree-a", mem_tree_chunks.c.summary_id.is_(None)
                )
            ).scalar_one()
        return (
            bool(loose == 0) and MemTreeJobs(get_engine(db_url)).admin.count_by_state().get("ready", 0) == 0
        )

    wait_until(sealed, 120, "the 16 chunks sealed into summaries", fleet)
    console = serve_console(db_url)

    # An extract's page lists the append it enqueued; the append's page names the extract.
    extract = MemTreeJobs(get_engine(db_url)).admin.page(kinds=["extract_chunk"], limit=1)[0]
    browser.get(f"{console.base}/jobs/{extract.id}")
    [followup] = [
        e.get_attribute("data-id") for e in browser.find_elements(By.CSS_SELECTOR, "#followups tr[data-id]")
    ]
    browser.get(f"{console.base}/jobs/{followup}")
    assert extract.id in _text(browser, "#parent")

    browser.get(f"{console.base}/trees/tree-a")
    assert "level 0: 16 chunks" in _text(browser, "#levels")

    def open_all(b: Any) -> bool:
        closed = b.find_elements(By.CSS_SELECTOR, "details:not([open]) > summary")
        for summary in closed:
            summary.click()
        return not closed and not b.find_elements(By.XPATH, "//div[@class='children' and text()='…']")

    _wait(browser, open_all, "every summary opened down to its chunks")
    shown = {
        e.get_attribute("data-node") for e in browser.find_elements(By.CSS_SELECTOR, 'li[data-level="0"]')
    }
    assert shown == {c.id for c in chunks}
    shots.take("tree")

    browser.find_element(By.CSS_SELECTOR, 'li[data-node="k07"] a').click()
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#path li"), "the chunk's path")
    path = [e.get_attribute("data-node") for e in browser.find_elements(By.CSS_SELECTOR, "#path li")]
    levels = [int(e.get_attribute("data-level")) for e in browser.find_elements(By.CSS_SELECTOR, "#path li")]
    assert path[0] == "k07" and levels == list(range(len(levels))) and len(levels) >= 2


def _outside_address() -> str:
    """An address of this machine that is not loopback."""
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    v4 = [a for a in found if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) and not a.startswith("127.")]
    if not v4:
        pytest.fail("no non-loopback IPv4 address on this machine to reach the console from outside")
    return v4[0]


def test_beyond_loopback_an_unauthenticated_browser_is_refused(
    serve_console: Callable[..., RunningConsole], browser: Any, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path}/console.sqlite3"
    outside = _outside_address()
    console = serve_console(db_url, host="0.0.0.0", web_allow_unauthenticated=True)
    browser.get(f"http://{outside}:{console.port}/queues")
    assert "answers loopback clients only" in browser.page_source
    Shots(browser, tmp_path / "screenshots").take("refused-beyond-loopback")
    browser.get(f"http://127.0.0.1:{console.port}/queues")  # the same console, from loopback
    assert "Queues" in browser.title


def test_decay_maintenance_and_failures_pages_in_the_browser(
    serve_console: Callable[..., RunningConsole], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    from memtasks.domain.decay import DecayKind, DecaySpec, SummaryMethod
    from memtasks.domain.retrieval import RetrievalFailure
    from memtasks.services.retrieval_failures import DatabaseSink
    from memtasks.storage.decay_queue import DecayJobs
    from memtasks.storage.sweeps_repo import Sweeps

    db_url = f"sqlite:///{tmp_path}/console.sqlite3"
    shots = Shots(browser, tmp_path / "screenshots")
    console = serve_console(db_url, llm_model="summariser-7b", llm_prompt_template_hash="sha256:5e1f")
    engine = get_engine(db_url)
    waiting = DecayJobs(engine).enqueue(
        DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_1", "mem_2"), SummaryMethod.LLM_SUMMARY),
        created_by="ops",
    )
    sweeps = Sweeps(engine)
    for name, interval in (("recover", 60_000), ("dispatch_due", 30_000), ("prune_finished", 3_600_000)):
        slot = sweeps.claim_slot(name, interval)
        assert slot is not None
        sweeps.finish(name, slot, ok=True, detail="ok")
    DatabaseSink(engine).write(
        [
            RetrievalFailure.new("no_hit", "vector", f"where did we meet {i}?", latency_ms=40 + i)
            for i in range(5)
        ]
        + [RetrievalFailure.new("low_confidence", "hybrid", "Ada's birthday", top_score=0.31, latency_ms=80)]
    )

    browser.get(f"{console.base}/jobs?table=decay")
    assert waiting in _text(browser, "#jobs")
    shots.take("decay-jobs")
    browser.get(f"{console.base}/jobs/{waiting}")
    assert f"memtasks decay run {waiting} --attestation FILE" in _text(browser, "#attestation")
    assert '"model": "summariser-7b"' in _text(browser, "#attestation-document")
    shots.take("decay-attestation")

    browser.get(f"{console.base}/maintenance")
    assert {
        e.get_attribute("data-sweep")
        for e in browser.find_elements(By.CSS_SELECTOR, "#sweeps tr[data-sweep]")
    } == {
        "recover",
        "dispatch_due",
        "prune_finished",
    }
    browser.find_element(By.ID, "plan-button").click()  # htmx fetches the plan into the page
    _wait(browser, lambda b: "would archive" in _text(b, "#plan"), "the dry-run plan shown")
    shots.take("maintenance")

    browser.get(f"{console.base}/failures?hours=24")
    assert _text(browser, "#failures-total") == "6"
    shots.take("failures")
