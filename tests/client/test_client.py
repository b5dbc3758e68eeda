"""memtasks.client against a real Redis: local checks, the messages it sends, what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from memtasks.client import BrokerUnreachable, MemtasksClient
from memtasks.domain.errors import ConfigurationError, MalformedPayload, UnknownJobKind, ValidationError
from memtasks.domain.ids import check_decay_job_id, check_mem_tree_job_id
from memtasks.worker import names
from tests.pipeline.fleet import ROOT

pytestmark = pytest.mark.redis

HEAVY = ("sqlalchemy", "flower", "tornado", "psycopg", "psycopg2", "pydantic_settings", "pydantic", "alembic")


@pytest.fixture
def broker(redis_url: str) -> Iterator[str]:
    """A Redis database of this module's own (flushed before and after)."""
    url = redis_url.rsplit("/", 1)[0] + "/13"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def messages(url: str) -> list[dict[str, Any]]:
    """Every message waiting in the ``default`` queue (each priority list), decoded."""
    r = redis.Redis.from_url(url)
    found = []
    for key in sorted(r.scan_iter("default*")):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(__import__("base64").b64decode(message["body"]))
            found.append({"key": key.decode(), "headers": message["headers"], "args": args, "kwargs": kwargs})
    return found


def test_each_call_returns_the_id_it_sends_to_default_at_the_kinds_priority(broker: str) -> None:
    with MemtasksClient(broker) as client:
        ids = {
            "extract_chunk": client.extract_chunk("c1"),
            "seal": client.seal("t1", 0, force=True),
            "append_buffer": client.append_buffer("t1", 0, "c1", source_id="s1"),
            "flush_stale": client.flush_stale(),
            "reembed_backfill": client.reembed_backfill("m-2", batch=10),
            "seal_document": client.seal_document("t1", "doc", "v2", delay_s=5),
        }
        decay_id = client.decay("episode_compression", ["ep_1", "ep_2"], "agent-7")
    for job_id in ids.values():
        check_mem_tree_job_id(job_id)
    check_decay_job_id(decay_id)
    sent = {m["kwargs"]["job_id"]: m for m in messages(broker)}
    assert set(sent) == {*ids.values(), decay_id}
    seal = sent[ids["seal"]]
    assert seal["headers"]["task"] == names.MEM_TREE_ENQUEUE
    assert seal["headers"]["shadow"] == "memtasks.mem_tree.enqueue[seal]"
    assert seal["kwargs"] == {
        "kind": "seal",
        "payload": {"tree_id": "t1", "level": 0, "force": True},
        "dedupe_key": "seal:t1:0",
        "job_id": ids["seal"],
    }
    assert seal["key"] == "default:1", "seal is the most urgent kind: Redis priority 1"
    assert sent[ids["extract_chunk"]]["kwargs"]["dedupe_key"] == "extract:c1"
    assert sent[ids["append_buffer"]]["kwargs"]["dedupe_key"] == "append:source:s1:c1"
    assert sent[ids["seal_document"]]["kwargs"]["delay_s"] == 5
    decay = sent[decay_id]
    assert decay["headers"]["task"] == names.DECAY_ENQUEUE
    assert decay["kwargs"]["source_ids"] == ["ep_1", "ep_2"] and decay["kwargs"]["created_by"] == "agent-7"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: c.extract_chunk(""), MalformedPayload, "'chunk_id' must be a non-empty string"),
        (lambda c: c.seal("t", 99), MalformedPayload, "'level' must be a whole number between 0 and 64"),
        (lambda c: c.reembed_backfill("m", batch=0), MalformedPayload, "'batch' must be a positive"),
        (lambda c: c.enqueue("topic_route", {}), UnknownJobKind, "topic_route"),
        (lambda c: c.extract_chunk("c", delay_s=float("nan")), ValidationError, "delay_s"),
        (lambda c: c.extract_chunk("c", max_attempts=0), ValidationError, "max_attempts"),
        (lambda c: c.decay("bogus", ["x"], "me"), ValidationError, "bogus"),
        (lambda c: c.decay("candidate_compression", [], "me"), ValidationError, "at least one source id"),
        (lambda c: c.decay("candidate_compression", ["mem_1"], " "), ValidationError, "created_by|who"),
    ],
)
def test_bad_input_is_refused_here_naming_the_field_and_nothing_is_sent(
    broker: str, call: Any, error: type[Exception], match: str
) -> None:
    with MemtasksClient(broker) as client, pytest.raises(error, match=match):
        call(client)
    assert messages(broker) == []


def test_an_unreachable_broker_is_named_with_its_password_masked() -> None:
    client = MemtasksClient("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(
        BrokerUnreachable, match=r"cannot reach the broker at redis://:\*\*\*@127.0.0.1:1/0"
    ) as err:
        client.seal("t", 0)
    assert "s3cret" not in str(err.value)
    with pytest.raises(ConfigurationError, match="expected one of"):
        MemtasksClient("http://127.0.0.1:6379/0")


def test_the_broker_url_comes_from_the_environment_when_the_client_is_made(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MemtasksClient().broker_url == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("MEMTASKS_BROKER_URL", broker)
    assert MemtasksClient().broker_url == broker


PROBE = """
import sys
from memtasks.client import MemtasksClient
heavy = {heavy!r}
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in heavy)
assert not loaded(), f"imported at import: {{loaded()}}"
with MemtasksClient({broker!r}) as client, client.batch():
    client.extract_chunk("c1"); client.seal("t", 1); client.decay("candidate_compression", ["mem_1"], "me")
assert not loaded(), f"imported when sending: {{loaded()}}"
print("light")
"""


def test_the_client_imports_no_database_library_nor_flower(broker: str) -> None:
    probe = PROBE.format(heavy=HEAVY, broker=broker)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "light", done.stderr
    assert len(messages(broker)) == 3


def test_the_base_install_holds_only_what_the_client_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {dep.split("[")[0].split(">")[0].split("<")[0].strip().lower() for dep in project["dependencies"]}
    assert base == {"celery", "kombu", "redis"}
    extras = project["optional-dependencies"]
    assert {"worker", "postgres", "flower", "web"} <= set(extras)
    assert any(d.startswith("sqlalchemy") for d in map(str.lower, extras["worker"]))
    assert any(d.startswith("psycopg") for d in extras["postgres"])
    assert any(d.startswith("flower") for d in extras["flower"])
    assert "memtasks[worker,postgres,flower,web]" in extras["dev"], "make install gets everything"
    assert any(d.startswith("starlette") for d in extras["web"]) and "memtasks[worker]" in extras["web"]
    assert project["scripts"]["memtasks"] == "memtasks.command:main"


def test_the_command_without_the_worker_extra_says_what_to_install() -> None:
    # A base install: the worker extra's modules cannot be imported.
    probe = (
        "import sys\n"
        "for name in ('sqlalchemy', 'typer', 'pydantic_settings'): sys.modules[name] = None\n"
        "from memtasks.command import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert (
        done.stderr == "error: the memtasks command needs the worker extra: pip install 'memtasks[worker]'\n"
    )
    assert done.stdout == ""
