"""The fleet commands take their defaults from Settings: `memtasks worker` (MEMTASKS_WORKER_QUEUES,
MEMTASKS_WORKER_CONCURRENCY), `memtasks flower` (MEMTASKS_FLOWER_PORT,
MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED), `memtasks metrics` (MEMTASKS_METRICS_PORT,
MEMTASKS_METRICS_ADDRESS) and `memtasks enqueue decay` (MEMTASKS_OPERATOR).

The worker and Flower commands end by exec'ing Celery: here the exec is replaced by a recorder
of the command line it would run, so no worker starts. The exporter really serves, on the port
of its setting; the decay job is really enqueued and read back."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from memtasks.cli import fleet, main
from memtasks.domain.queues import QUEUES
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import get_engine
from memtasks.storage.memory_repo import MemoryStore
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]
CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """The command lines `memtasks worker|flower` would become (nothing is exec'd)."""
    monkeypatch.setenv("MEMTASKS_DATA_DIR", str(tmp_path / "data"))
    for name in ("FLOWER_PORT", "FLOWER_ADDRESS", "FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_UNIX_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    recorded: list[list[str]] = []
    monkeypatch.setattr(fleet, "_exec", recorded.append)
    return recorded


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """`memtasks ARGS…` in this process; (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        captured = capsys.readouterr()
        return int(exited.value.code or 0), captured.out, captured.err

    return invoke


def flat(text: str) -> str:
    """``text`` on one line, without the frame Rich may draw around a usage error."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


# ── worker ───────────────────────────────────────────────────────────────────


def test_worker_argv_is_celery_worker_on_the_given_queues() -> None:
    assert fleet.worker_argv("critical,default", 4, ["-n", "a@%h"]) == [
        *CELERY,
        "worker",
        "-Q",
        "critical,default",
        "--without-mingle",
        "--without-gossip",
        "-c",
        "4",
        "-n",
        "a@%h",
    ]
    assert "-c" not in fleet.worker_argv("bulk", None)


def test_the_worker_consumes_every_queue_by_default(execs: list[list[str]], run: Run) -> None:
    assert run("worker")[0] == 0
    assert execs == [fleet.worker_argv(",".join(QUEUES), None)]


def test_the_worker_takes_its_queues_and_concurrency_from_the_settings(
    execs: list[list[str]], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTASKS_WORKER_QUEUES", "critical, default")
    monkeypatch.setenv("MEMTASKS_WORKER_CONCURRENCY", "4")
    assert run("worker", "-l", "info")[0] == 0
    assert execs == [fleet.worker_argv("critical,default", 4, ["-l", "info"])]


def test_the_command_line_wins_over_the_settings(
    execs: list[list[str]], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTASKS_WORKER_QUEUES", "critical")
    monkeypatch.setenv("MEMTASKS_WORKER_CONCURRENCY", "4")
    assert run("worker", "-Q", "bulk,llm", "-c", "2")[0] == 0
    assert execs == [fleet.worker_argv("bulk,llm", 2)]


def test_a_bad_queue_setting_is_one_line_naming_the_variable_and_the_queues(
    execs: list[list[str]], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTASKS_WORKER_QUEUES", "critical,urgent")
    code, _, err = run("worker")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: invalid settings: MEMTASKS_WORKER_QUEUES: Value error, unknown queue 'urgent' "
        f"(comma-separated, each one of {', '.join(QUEUES)})"
    ]
    assert execs == []


def test_bad_worker_options_are_usage_errors_naming_the_valid_values(
    execs: list[list[str]], run: Run
) -> None:
    code, _, err = run("worker", "-Q", "urgent")
    assert code == 2 and f"unknown queue 'urgent' (comma-separated, each one of {', '.join(QUEUES)})" in flat(
        err
    )
    code, _, err = run("worker", "-c", "0")
    assert code == 2 and "0 is not in the valid range 1 to 1000" in flat(err)
    assert execs == []


# ── flower ───────────────────────────────────────────────────────────────────


def test_flower_listens_on_the_port_of_its_setting(
    execs: list[list[str]], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("flower", "--address=127.0.0.1")[0] == 0
    monkeypatch.setenv("MEMTASKS_FLOWER_PORT", "6555")
    assert run("flower", "--address=127.0.0.1")[0] == 0
    assert run("flower", "--address=127.0.0.1", "--port=7555")[0] == 0
    assert execs == [
        [*CELERY, "flower", "--address=127.0.0.1", "--port=5555"],
        [*CELERY, "flower", "--address=127.0.0.1", "--port=6555"],
        [*CELERY, "flower", "--address=127.0.0.1", "--port=7555"],
    ]
    monkeypatch.setenv("FLOWER_PORT", "8555")  # Flower's own variable: Flower reads it
    assert run("flower", "--address=127.0.0.1")[0] == 0
    assert execs[-1] == [*CELERY, "flower", "--address=127.0.0.1"]


def test_flower_beyond_loopback_without_auth_needs_the_opt_out(
    execs: list[list[str]], run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run("flower", "--address=0.0.0.0")
    assert code == 2 and "without authentication" in flat(err)
    monkeypatch.setenv("MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED", "true")
    assert run("flower", "--address=0.0.0.0")[0] == 0
    assert execs == [[*CELERY, "flower", "--address=0.0.0.0", "--port=5555"]]


# ── metrics ──────────────────────────────────────────────────────────────────


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_exporter_serves_on_the_port_and_address_of_its_settings(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "MEMTASKS_DATA_DIR": str(tmp_path),
        "MEMTASKS_METRICS_PORT": str(port),
        "MEMTASKS_METRICS_ADDRESS": "127.0.0.1",
    }
    memtasks = str(Path(sys.executable).parent / "memtasks")
    subprocess.run([memtasks, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    exporter = subprocess.Popen(
        [str(Path(sys.executable).parent / "memtasks"), "metrics"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def answers() -> bool:
            assert exporter.poll() is None, exporter.stderr.read().decode() if exporter.stderr else ""
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status == 200 and b"memtasks_" in response.read()
            except OSError:
                return False

        wait_for(answers, timeout=30)
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
        if exporter.stderr:
            exporter.stderr.close()


def test_a_bad_exporter_address_is_refused(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTASKS_METRICS_ADDRESS", "0.0.0.0:9808")
    code, _, err = run("metrics")
    assert code == 2
    assert err.strip().splitlines()[0].startswith("error: invalid settings: MEMTASKS_METRICS_ADDRESS: ")
    code, _, err = run("metrics", "--address", "no such host!")
    assert code == 2 and "neither an IP address nor a host name" in flat(err)


# ── enqueue decay ────────────────────────────────────────────────────────────


def test_a_decay_job_is_created_by_the_operator_of_the_settings(
    run: Run, db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_BROKER_URL", redis_url.rsplit("/", 1)[0] + "/5")
    monkeypatch.setenv("MEMTASKS_LOCK_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/6")
    store = MemoryStore(get_engine(db_url))
    ids = [store.insert_memory(claim=f"memory {i}", confidence=0.5, authority="candidate") for i in range(2)]

    code, _, err = run("enqueue", "decay", "candidate_compression", *ids)
    assert code == 2 and "MEMTASKS_OPERATOR" in flat(err)

    monkeypatch.setenv("MEMTASKS_OPERATOR", "ops@example.com")
    code, out, err = run("enqueue", "decay", "candidate_compression", *ids)
    assert code == 0, err
    job = DecayJobs(get_engine(db_url)).get(out.strip())
    assert job is not None and job.created_by == "ops@example.com"

    code, out, err = run("enqueue", "decay", "candidate_compression", *ids, "--created-by", "alice")
    assert code == 0, err
    job = DecayJobs(get_engine(db_url)).get(out.strip())
    assert job is not None and job.created_by == "alice"
