"""Secrets in URLs never reach a log, an error or a report: one masking helper, used everywhere.

Every URL here carries :data:`~tests.security.conftest.SECRET` (a password the private Redis and
the trusting test PostgreSQL accept); each place that can show a URL is made to show it.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine

from bench.chaos.procs import free_port
from memtasks.config import load_settings
from memtasks.domain.errors import MemtasksError
from memtasks.domain.masking import mask_url, mask_urls_in
from memtasks.locks import RedisLockGate, check_reachable, mask_redis_url, redis_client
from memtasks.metrics import QueueCollector
from memtasks.storage import engine as engine_module
from memtasks.storage.engine import EngineOptions, get_engine, parse_url
from memtasks.worker import names
from memtasks.worker.app import create_app
from tests.helpers import wait_for
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import client_app, settings_from
from tests.security.conftest import SECRET, assert_no_secret, with_password

pytestmark = pytest.mark.security

MEMTASKS = str(Path(sys.executable).parent / "memtasks")
SPLIT = f"{SECRET[:8]}@{SECRET[8:]}"
"""A password with an unescaped ``@``: a parser that stops at the first ``@`` shows its tail."""


# ── the helper ───────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            f"postgresql+psycopg://user:{SECRET}@db:5432/memtasks",
            "postgresql+psycopg://user:***@db:5432/memtasks",
        ),
        (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (f"redis://user:{SECRET}@h/1", "redis://user:***@h/1"),
        (f"rediss://u:{SECRET}@[::1]:6380/0", "rediss://u:***@[::1]:6380/0"),
        (f"amqp://user:{SECRET}@rabbit:5672//", "amqp://user:***@rabbit:5672//"),
        (f"postgresql://u:{SPLIT}@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
        (f"redis://:{SECRET[:5]}/{SECRET[5:]}@h:1/0", "redis://:***@h:1/0"),
        (
            f"postgresql://u@h/db?sslmode=require&password={SECRET}&sslpassword={SECRET}",
            "postgresql://u@h/db?sslmode=require&password=***&sslpassword=***",
        ),
        (f"redis://h:1/0?Token={SECRET}#frag", "redis://h:1/0?Token=***#frag"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("sqlite:////var/lib/memtasks/a@b.sqlite3", "sqlite:////var/lib/memtasks/a@b.sqlite3"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("not a url", "not a url"),
        (f"://:{SECRET}@h", "://:***@h"),
        (f"//u:{SECRET}@h/db", "//u:***@h/db"),
        (f"u:{SECRET}@h", "u:***@h"),
        (f"1bad://u:{SECRET}@h", "1bad://u:***@h"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked, "masking is idempotent"
    # The one helper is what the engine, the lock client and the settings use.
    assert engine_module.mask_url(url) == masked
    assert mask_redis_url(url) == masked


def test_mask_urls_in_free_text() -> None:
    text = (
        f"cannot reach 'postgresql://u:{SECRET}@h/db' nor redis://:{SECRET}@r:1/0, "
        f"dsn host=h password={SECRET} user=u; amqp://a:{SPLIT}@q//: refused"
    )
    masked = mask_urls_in(text)
    assert_no_secret(masked, "mask_urls_in")
    assert "postgresql://u:***@h/db" in masked and "redis://:***@r:1/0" in masked
    assert "password=***" in masked and "amqp://a:***@q//" in masked


def test_nothing_under_memtasks_masks_urls_its_own_way() -> None:
    for path in sorted((ROOT / "memtasks").rglob("*.py")):
        text = path.read_text()
        assert "hide_password=True" not in text, f"{path}: use memtasks.domain.masking"
        assert "maybe_sanitize_url" not in text, f"{path}: use memtasks.domain.masking"


def test_the_settings_show_their_urls_masked() -> None:
    settings = load_settings(
        database_url=f"postgresql://u:{SECRET}@h/db",
        broker_url=f"redis://:{SECRET}@h:1/0",
        lock_redis_url=f"redis://u:{SECRET}@h:1/1",
    )
    for shown in (repr(settings), str(settings), repr(create_app(settings).conf.memtasks_settings)):
        assert_no_secret(shown, "the settings' repr")
        assert "database_url='postgresql://u:***@h/db'" in shown
    assert settings.database_url == f"postgresql://u:{SECRET}@h/db", "the value itself is intact"


# ── exceptions ───────────────────────────────────────────────────────────────

BAD_DATABASE_URLS = [
    f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/db",
    f"postgresql+psycopg://user:{SECRET}@127.0.0.1:abc/db",
    f"postgresql+psycopg://user:{SECRET}@[::1/db",
    f"postgresql://u:{SPLIT}@127.0.0.1:1/db",
    f"postgresql+psycopg://user@127.0.0.1:1/db?password={SECRET}",
    f"mysql://user:{SECRET}@h/db",
    f"sqlite://user:{SECRET}@/",
]


@pytest.mark.parametrize("url", BAD_DATABASE_URLS)
def test_database_errors_mask_the_password(url: str) -> None:
    with pytest.raises(MemtasksError) as raised:
        get_engine(url, EngineOptions(connect_timeout_s=1, auto_migrate=False))
    assert_no_secret(str(raised.value), f"the error of {mask_url(url)}")
    assert "\n" not in str(raised.value)


def test_a_port_that_is_no_number_is_a_configuration_error() -> None:
    with pytest.raises(MemtasksError, match=r"invalid database URL .*MEMTASKS_DATABASE_URL") as raised:
        parse_url(f"postgresql://user:{SECRET}@h:abc/db")
    assert "user:***@h:abc/db" in str(raised.value)


BAD_REDIS_URLS = [
    f"redis://:{SECRET}@127.0.0.1:1/0",
    f"redis://u:{SECRET}@127.0.0.1:abc/0",
    f"redis://:{SPLIT}@127.0.0.1:1/0",
    f"redis://127.0.0.1:1/0?password={SECRET}",
    f"http://:{SECRET}@example.com:6379/0",
    f"unix://:{SECRET}@/nonexistent/redis.sock",
]


@pytest.mark.parametrize("url", BAD_REDIS_URLS)
def test_lock_server_errors_mask_the_password(url: str) -> None:
    def connect() -> None:
        check_reachable(redis_client(url, connect_timeout_s=0.5, retries=0))

    with pytest.raises(MemtasksError) as raised:
        connect()
    assert_no_secret(str(raised.value), f"the error of {mask_url(url)}")
    if url.startswith("redis://:"):
        gate = RedisLockGate(redis_client(url, connect_timeout_s=0.5, retries=0), "sec", ttl_s=5)
        with pytest.raises(MemtasksError) as held, gate.hold():
            pass
        assert_no_secret(str(held.value), "the lock gate's error")


@pytest.mark.parametrize(
    "env",
    [
        {"broker_url": f"http://:{SECRET}@h/0"},
        {"broker_url": f"redis://:{SECRET}@h:abc/0"},
        {"lock_redis_url": f"redis://:{SECRET}@h:1/not-a-number"},
        {"lock_redis_url": f"amqp://u:{SECRET}@h//"},
    ],
)
def test_settings_errors_mask_the_password(env: dict[str, str]) -> None:
    with pytest.raises(MemtasksError, match="invalid settings: MEMTASKS_") as raised:
        load_settings(**env)
    assert_no_secret(str(raised.value), "the settings error")


# ── the command ──────────────────────────────────────────────────────────────


def memtasks(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEMTASKS, *args],
        cwd=ROOT,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def pg_with_secret(pg_schema: str) -> tuple[str, str]:
    return with_password(pg_schema)


@pytest.mark.integration
def test_status_and_db_current_show_no_secret(
    pg_with_secret: tuple[str, str], broker_url: str, lock_url: str
) -> None:
    db_url, password = pg_with_secret
    env = {
        "MEMTASKS_DATABASE_URL": db_url,
        "MEMTASKS_BROKER_URL": broker_url,
        "MEMTASKS_LOCK_REDIS_URL": lock_url,
    }
    upgraded = memtasks("db", "upgrade", env=env)
    enqueued = memtasks("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}', env=env)
    assert enqueued.returncode == 0, enqueued.stderr
    shown = memtasks("status", env=env)
    as_json = memtasks("status", "--json", env=env)
    current = memtasks("db", "current", env=env)
    for done in (upgraded, enqueued, shown, as_json, current):
        assert done.returncode == 0, done.stderr
        assert_no_secret(done.stdout + done.stderr, f"`memtasks {' '.join(done.args[1:])}`", password)
        assert_no_secret(done.stdout + done.stderr, f"`memtasks {' '.join(done.args[1:])}`")
    assert "seal" in shown.stdout
    assert {row["kind"]: row["ready"] for row in json.loads(as_json.stdout)["jobs"]} == {"seal": 1}
    assert ":***@127.0.0.1" in current.stdout, current.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "env", "names_it"),
    [
        (["status"], {"MEMTASKS_DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/db"}, "127.0.0.1:1"),
        (
            ["status"],
            {"MEMTASKS_DATABASE_URL": f"postgresql://u@127.0.0.1:1/db?password={SECRET}"},
            "password=***",
        ),
        (
            ["status"],
            {"MEMTASKS_DATABASE_URL": f"postgresql://u:{SPLIT}@127.0.0.1:1/db"},
            "u:***@127.0.0.1:1",
        ),
        (
            ["status"],
            {"MEMTASKS_DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:abc/db"},
            "invalid database URL",
        ),
        (["--lock-redis-url", f"redis://:{SECRET}@127.0.0.1:1/0", "consolidate"], {}, "127.0.0.1:1"),
        (["status"], {"MEMTASKS_BROKER_URL": f"http://:{SECRET}@h/0"}, "MEMTASKS_BROKER_URL"),
        (["--broker-url", f"redis://:{SECRET}@h:port/0", "status"], {}, "MEMTASKS_BROKER_URL"),
    ],
)
def test_command_errors_are_one_line_without_the_secret(
    args: list[str], env: dict[str, str], names_it: str, tmp_path: Path
) -> None:
    env = {"MEMTASKS_DATABASE_URL": f"sqlite:///{tmp_path}/e.sqlite3", **env}
    if args[-1] == "consolidate":  # a database to consolidate, so that the lock server is reached
        assert memtasks("db", "upgrade", env=env).returncode == 0
    done = memtasks(*args, env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert names_it in lines[0]
    assert_no_secret(done.stdout + done.stderr, f"`memtasks {' '.join(args)}`")


@pytest.mark.integration
def test_a_wrong_redis_user_is_one_line_without_the_secret(tmp_path: Path, private_redis: str) -> None:
    url = private_redis.replace("redis://:", "redis://nosuchuser:") + "/1"
    env = {"MEMTASKS_DATABASE_URL": f"sqlite:///{tmp_path}/e.sqlite3", "MEMTASKS_LOCK_REDIS_URL": url}
    assert memtasks("db", "upgrade", env=env).returncode == 0
    done = memtasks("consolidate", env=env)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert_no_secret(done.stdout + done.stderr, "`memtasks consolidate` with a wrong user")


@pytest.mark.integration
@pytest.mark.parametrize(
    "broker", [f"redis://:{SECRET}@127.0.0.1:1/0", f"amqp://user:{SECRET}@127.0.0.1:1//"]
)
def test_an_unreachable_broker_loses_no_job_and_shows_no_secret(tmp_path: Path, broker: str) -> None:
    env = {"MEMTASKS_DATABASE_URL": f"sqlite:///{tmp_path}/e.sqlite3", "MEMTASKS_BROKER_URL": broker}
    assert memtasks("db", "upgrade", env=env).returncode == 0
    done = memtasks("enqueue", "mem-tree", "seal", "-p", '{"tree_id": "t", "level": 0}', env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("job:")
    assert "could not publish" in done.stderr, "the warning is there, masked"
    assert_no_secret(done.stdout + done.stderr, "`memtasks enqueue` with an unreachable broker")


# ── the worker ───────────────────────────────────────────────────────────────


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_logs_and_reports_its_configuration_masked(
    pg_with_secret: tuple[str, str],
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db_url, password = pg_with_secret
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker("w1", queues="default,critical", concurrency=1)
    with client_app(settings) as app:
        app.send_task(
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": "t", "level": 0}},
            queue="default",
        )
        wait_until(lambda: "'outcome': 'done'" in fleet.log("w1"), 60, "the job ran", fleet)
        # What `celery inspect conf` — and Flower's worker page — show of the configuration.
        replies = app.control.inspect(timeout=5).conf() or {}
    [(node, conf)] = [(n, c) for n, c in replies.items() if n.startswith("w1@")]
    shown = json.dumps(conf, default=str)
    assert_no_secret(shown, f"`celery inspect conf` of {node}")
    assert_no_secret(shown, f"`celery inspect conf` of {node}", password)
    assert "memtasks_settings" in conf and ":***@" in conf["memtasks_settings"]
    log = fleet.log("w1")
    assert ".> transport:" in log and ":**@127.0.0.1" in log, "the banner names the broker, masked"
    assert_no_secret(log, "the worker's log")
    assert_no_secret(log, "the worker's log", password)


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_retrying_an_unreachable_database_logs_it_masked(
    fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:1/test?sslpassword={SECRET}"
    fleet.env = fleet_env(
        database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, breaker_cooldown_s=1
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker("w1", queues="default", concurrency=1)
    with client_app(settings) as app:
        app.send_task(
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": "t", "level": 0}},
            queue="default",
        )
    wait_until(
        lambda: fleet.log("w1").count("database unavailable") >= 2, 60, "the enqueue is retried", fleet
    )
    log = fleet.log("w1")
    assert (
        "cannot use the database at postgresql+psycopg://postgres:***@127.0.0.1:1/test?sslpassword=***" in log
    )
    assert_no_secret(log, "the worker's retry log")


# ── the metrics exporter ─────────────────────────────────────────────────────


@pytest.mark.integration
def test_the_metrics_exporter_shows_no_secret(pg_with_secret: tuple[str, str], tmp_path: Path) -> None:
    db_url, password = pg_with_secret
    assert memtasks("db", "upgrade", env={"MEMTASKS_DATABASE_URL": db_url}).returncode == 0
    port = free_port()
    log = tmp_path / "metrics.log"
    with log.open("wb") as sink:
        exporter = subprocess.Popen(
            [MEMTASKS, "metrics", "--port", str(port), "--address", "127.0.0.1"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "MEMTASKS_DATABASE_URL": db_url},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    scraped: list[str] = []

    def scrape() -> bool:
        assert exporter.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                scraped.append(reply.read().decode())
        except OSError:
            return False
        return True

    try:
        wait_for(scrape, timeout=60, interval=0.1)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    assert "memtasks_up 1.0" in scraped[-1]
    for text, where in ((scraped[-1], "/metrics"), (log.read_text(), "the exporter's output")):
        assert_no_secret(text, where)
        assert_no_secret(text, where, password)


@pytest.mark.integration
def test_the_web_console_shows_no_secret(pg_with_secret: tuple[str, str], tmp_path: Path) -> None:
    db_url, password = pg_with_secret
    assert memtasks("db", "upgrade", env={"MEMTASKS_DATABASE_URL": db_url}).returncode == 0
    port = free_port()
    log = tmp_path / "web.log"
    auth = f"ops:{SECRET}"
    with log.open("wb") as sink:
        console = subprocess.Popen(
            [MEMTASKS, "web", "--port", str(port)],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "MEMTASKS_DATABASE_URL": db_url, "MEMTASKS_WEB_BASIC_AUTH": auth},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    pages: list[str] = []
    opener = urllib.request.build_opener()
    opener.addheaders = [("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())]

    def read_all() -> bool:
        assert console.poll() is None, log.read_text()
        try:
            for path in (
                "/queues",
                "/jobs",
                "/maintenance",
                "/failures",
                "/trees",
                "/api/queues",
                "/api/session",
            ):
                with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                    pages.append(reply.read().decode())
        except OSError:
            return False
        return True

    try:
        wait_for(read_all, timeout=60, interval=0.2)
    finally:
        console.terminate()
        console.wait(timeout=30)
    assert any("Queues" in page for page in pages)
    for text, where in ((" ".join(pages), "the console's pages"), (log.read_text(), "the console's output")):
        assert_no_secret(text, where)
        assert_no_secret(text, where, password)


def test_a_collector_that_cannot_read_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(
        f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db", connect_args={"connect_timeout": 1}
    )
    registry = CollectorRegistry()
    registry.register(QueueCollector(engine))
    with caplog.at_level(logging.WARNING, logger="memtasks.metrics"):
        scraped = generate_latest(registry).decode()
    engine.dispose()
    assert "memtasks_up 0.0" in scraped
    assert "cannot read the job tables" in caplog.text
    assert_no_secret(scraped + caplog.text, "the exporter")
