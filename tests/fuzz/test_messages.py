"""Malformed messages sent straight to the broker, against one real ``celery worker``.

Every memtasks task name (and unknown ones) gets messages with missing arguments, extra
arguments, unknown keyword arguments and wrong types, each with exactly one thing wrong.
After each batch a valid job is enqueued the same way and must be done. Then:

- the worker is alive, none of its pool processes was lost;
- no row was inserted by a bad message (only the valid job's);
- every bad message was received once and ended once — no retry, no redelivery — and the
  broker's queues and unacked set are empty;
- the line that ends each bad message names what was wrong.

The worker has a private Redis (started here, never the shared one) and a SQLite file.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from memtasks.config import load_settings
from memtasks.domain.jobs import MAX_PAYLOAD_DEPTH
from memtasks.domain.retrieval import FailureType
from memtasks.storage.engine import get_engine
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.tables import decay_jobs, mem_tree_jobs
from memtasks.worker import names
from memtasks.worker.app import create_app
from tests.fuzz.budget import fuzz
from tests.fuzz.strategies import deep, hostile_text, json_values, storable_char, surrogate, unknown_kind
from tests.helpers import private_redis_server
from tests.pipeline.fleet import Fleet, fleet_env

pytestmark = [pytest.mark.fuzz, pytest.mark.integration, pytest.mark.redis, pytest.mark.slow]

SETTLE_S = 60.0


# ── a private Redis and one worker for the module ────────────────────────────


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module alone (other tests FLUSHALL the shared one)."""
    with private_redis_server(tmp_path_factory.mktemp("fuzz-redis")) as url:
        yield url


@dataclass
class Rig:
    fleet: Fleet
    app: Celery
    db_url: str
    broker: redis.Redis
    log_path: Path
    seen: str = ""
    read_to: int = 0

    def __repr__(self) -> str:  # not the whole log in Hypothesis's report
        return f"Rig(worker log {self.log_path})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def log(self) -> str:
        """The worker's log so far (read incrementally)."""
        with self.log_path.open("rb") as f:
            f.seek(self.read_to)
            chunk = f.read()
        self.read_to += len(chunk)
        self.seen += chunk.decode("utf-8", errors="replace")
        return self.seen

    def counts(self) -> tuple[int, int, int]:
        with get_engine(self.db_url).connect() as conn:
            return tuple(  # type: ignore[return-value]
                int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (mem_tree_jobs, decay_jobs, memory_retrieval_failures)
            )

    def status_of(self, dedupe_key: str) -> str | None:
        with get_engine(self.db_url).connect() as conn:
            return conn.execute(
                select(mem_tree_jobs.c.status).where(mem_tree_jobs.c.dedupe_key == dedupe_key)
            ).scalar_one_or_none()

    def broker_idle(self) -> bool:
        """No message waits in any queue and none is delivered but unacknowledged."""
        for key in self.broker.scan_iter():
            kind = self.broker.type(key)
            if kind == b"list" and self.broker.llen(key):
                return False
        return not self.broker.hlen("unacked") and not self.broker.zcard("unacked_index")


@pytest.fixture(scope="module")
def rig(private_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("fuzz-worker")
    db_url = f"sqlite:///{folder}/memtasks.sqlite3"
    get_engine(db_url)  # migrated before the worker starts
    env = fleet_env(database_url=db_url, broker_url=f"{private_redis}/0", lock_redis_url=f"{private_redis}/1")
    env.pop("MEMTASKS_HANDLERS")  # the default handlers
    fleet = Fleet(folder, env)
    settings = load_settings(
        database_url=db_url, broker_url=f"{private_redis}/0", lock_redis_url=f"{private_redis}/1"
    )
    app = create_app(settings)
    try:
        fleet.worker("w1", concurrency=2)
        yield Rig(fleet, app, db_url, redis.Redis.from_url(f"{private_redis}/0"), fleet.logs["w1"])
    finally:
        app.close()
        fleet.stop_all()


# ── bad messages: each has exactly one thing wrong ───────────────────────────


@dataclass(frozen=True)
class Bad:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    expect: tuple[str, ...]
    """Alternatives: one of them must appear in the line that ends the message."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's report
        printer.text(repr(self))

    def __repr__(self) -> str:  # a 300-deep payload would make a 70 kB report
        return (
            f"Bad({self.name!r}, args={self.args!r:.300}, kwargs={self.kwargs!r:.300}, expect={self.expect})"
        )


SIGNATURES: dict[str, list[str]] = {
    names.MEM_TREE_RUN: ["job_id"],
    names.MEM_TREE_ENQUEUE: [
        "kind",
        "payload",
        "dedupe_key",
        "delay_s",
        "max_attempts",
        "job_id",
        "fair_key",
    ],
    names.MEM_TREE_DRAIN: ["kinds", "limit"],
    names.DECAY_RUN: ["job_id"],
    names.DECAY_ENQUEUE: ["kind", "source_ids", "created_by", "method", "delay_s", "job_id"],
    names.RECORD_RETRIEVAL_FAILURES: ["batch"],
    **{task: ["name", "interval_s"] for task in names.SWEEPS.values()},
}
REQUIRED = {
    names.MEM_TREE_RUN: 1,
    names.MEM_TREE_ENQUEUE: 2,
    names.MEM_TREE_DRAIN: 1,
    names.DECAY_RUN: 1,
    names.DECAY_ENQUEUE: 3,
    names.RECORD_RETRIEVAL_FAILURES: 1,
}
RECORD = {"failure_type": "no_hit", "retrieval_strategy": "semantic", "query_text": "q", "query_len": 1}
KNOWN_TYPES = {t.value for t in FailureType}
_serial = itertools.count()

not_a_number = st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.booleans())
hostile_ids = st.one_of(
    hostile_text,
    st.text(storable_char, max_size=10).map(lambda s: f"job:{s}\x00"),
    st.text(surrogate, min_size=1, max_size=2),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.none(),
    st.just("a" * 300),
)
bad_delays = st.one_of(
    st.floats(max_value=-1e-9),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e12, 10**30, True]),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
bad_text = st.one_of(
    st.integers(),
    st.lists(st.text(max_size=2), max_size=2),
    st.just(""),
    st.text(" \t", min_size=1, max_size=3),
    st.tuples(st.text(storable_char, max_size=5), st.sampled_from(["\x00", "\ud800", "\udfff"])).map("".join),
)


@st.composite
def signature_errors(draw: st.DrawFn, name: str, valid: dict[str, Any]) -> Bad:
    """Missing, extra or unknown arguments for a task whose valid arguments are ``valid``."""
    params = SIGNATURES[name]
    how = draw(st.sampled_from(["missing", "extra", "unknown"]))
    if how == "missing":
        required = params[: REQUIRED.get(name, 0)]
        if required:
            gone = draw(st.sampled_from(required))
            kwargs = {k: v for k, v in valid.items() if k != gone}
            return Bad(name, [], kwargs, (f"'{gone}'",))
        how = "extra"
    if how == "extra":
        args = [valid.get(p) for p in params] + draw(st.lists(json_values, min_size=1, max_size=3))
        return Bad(name, args, {}, ("positional argument",))
    extra = draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(lambda k: k not in params))
    return Bad(name, [], {**valid, extra: draw(json_values)}, (f"'{extra}'",))


def tree_id() -> str:
    return f"fz-{next(_serial)}"


@st.composite
def bad_enqueue(draw: st.DrawFn, what: str) -> Bad:
    valid: dict[str, Any] = {"kind": "seal", "payload": {"tree_id": tree_id(), "level": 0}}
    name = names.MEM_TREE_ENQUEUE
    if what == "signature":
        return draw(signature_errors(name, valid))
    if what == "kind":
        return Bad(
            name,
            [],
            {
                **valid,
                "kind": draw(
                    st.one_of(
                        unknown_kind(), st.integers(), st.lists(st.just("seal"), min_size=1, max_size=1)
                    )
                ),
            },
            ("unknown job kind",),
        )
    if what == "payload":
        return Bad(
            name,
            [],
            {
                **valid,
                "payload": draw(
                    st.one_of(
                        st.lists(json_values, max_size=2), st.text(max_size=5), st.integers(), st.none()
                    )
                ),
            },
            ("payload",),
        )
    if what in {"tree_id", "level", "force"}:
        value = draw(
            {
                "tree_id": bad_text,
                "level": st.one_of(
                    st.integers(max_value=-1), st.integers(min_value=65), st.floats(), not_a_number
                ),
                "force": st.one_of(st.integers(), st.text(max_size=3), st.lists(st.booleans(), max_size=1)),
            }[what]
        )
        return Bad(name, [], {**valid, "payload": {**valid["payload"], what: value}}, (f"'{what}'",))
    if what == "deep":
        depth = draw(st.integers(MAX_PAYLOAD_DEPTH, 300))
        return Bad(
            name,
            [],
            {**valid, "payload": {**valid["payload"], "x": deep(depth, 0, ["dict", "list"])}},
            ("nested deeper",),
        )
    value = draw(
        {
            "dedupe_key": st.one_of(bad_text, st.text(storable_char, min_size=513, max_size=520)),
            "fair_key": st.one_of(bad_text, st.text(storable_char, min_size=129, max_size=140)),
            "delay_s": bad_delays,
            "max_attempts": st.one_of(
                st.integers(max_value=0),
                st.integers(min_value=101),
                st.floats(),
                st.text(max_size=3),
                st.booleans(),
            ),
        }[what]
    )
    return Bad(name, [], {**valid, what: value}, (what,))


@st.composite
def bad_run(draw: st.DrawFn, name: str, what: str) -> Bad:
    if what == "signature":
        return draw(signature_errors(name, {"job_id": "job:x"}))
    outcome = "not_claimable" if name == names.MEM_TREE_RUN else "not_found"
    return Bad(name, [draw(hostile_ids)], {}, (outcome,))


@st.composite
def bad_drain(draw: st.DrawFn, what: str) -> Bad:
    name = names.MEM_TREE_DRAIN
    if what == "signature":
        return draw(signature_errors(name, {"kinds": ["seal"], "limit": 1}))
    if what == "kinds":
        kinds = draw(
            st.one_of(
                st.sampled_from(["seal", "", [], {}, None, 5]),
                st.lists(st.one_of(unknown_kind(), st.integers(), st.none()), min_size=1, max_size=3),
            )
        )
        return Bad(name, [], {"kinds": kinds, "limit": 1}, ("kinds", "unknown job kind"))
    limit = draw(
        st.one_of(not_a_number, st.sampled_from([float("nan"), float("inf")])).filter(
            lambda v: v is not True and v is not False
        )
    )
    return Bad(name, [], {"kinds": ["seal"], "limit": limit}, ("limit",))


@st.composite
def bad_decay_enqueue(draw: st.DrawFn, what: str) -> Bad:
    name = names.DECAY_ENQUEUE
    valid: dict[str, Any] = {"kind": "candidate_compression", "source_ids": ["mem_fz"], "created_by": "fuzz"}
    if what == "signature":
        return draw(signature_errors(name, valid))
    if what == "kind":
        return Bad(
            name,
            [],
            {**valid, "kind": draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))},
            ("DecayKind",),
        )
    if what == "method":
        return Bad(
            name,
            [],
            {**valid, "method": draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))},
            ("SummaryMethod",),
        )
    if what == "source_ids":
        ids = draw(
            st.one_of(
                st.sampled_from(["mem_fz", {"mem_fz": 1}, 5, None, [], ["ep_1"], [""], ["mem_" + "x" * 70]]),
                st.lists(st.one_of(bad_text, st.integers()), min_size=1, max_size=3),
            )
        )
        return Bad(name, [], {**valid, "source_ids": ids}, ("source", "takes only mem_"))
    if what == "created_by":
        value = draw(
            st.one_of(bad_text, st.text(storable_char, min_size=129, max_size=140).filter(str.strip))
        )
        return Bad(name, [], {**valid, "created_by": value}, ("created_by",))
    return Bad(
        name, [], {**valid, "delay_s": draw(bad_delays.filter(lambda v: v not in (0, False)))}, ("delay_s",)
    )


@st.composite
def bad_records(draw: st.DrawFn, what: str) -> Bad:
    name = names.RECORD_RETRIEVAL_FAILURES
    if what == "signature":
        return draw(signature_errors(name, {"batch": [RECORD]}))
    if what == "not_a_list":
        batch = draw(
            st.one_of(
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.text(max_size=4),
                st.integers(),
                st.none(),
            )
        )
        return Bad(name, [batch], {}, ("'rejected': 1",))
    corruptions = st.one_of(
        st.fixed_dictionaries(
            {
                "failure_type": st.one_of(
                    st.text(max_size=5).filter(lambda t: t not in KNOWN_TYPES), st.integers()
                )
            }
        ),
        st.fixed_dictionaries(
            {"retrieval_strategy": st.one_of(bad_text, st.text(storable_char, min_size=65, max_size=70))}
        ),
        st.fixed_dictionaries(
            {
                "query_len": st.one_of(
                    st.integers(max_value=-1), st.integers(min_value=2**31), st.floats(), st.none()
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "created_at_ms": st.one_of(
                    st.integers(min_value=10**15), st.integers(max_value=-1), st.floats()
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "top_score": st.one_of(
                    st.sampled_from([float("nan"), float("inf"), 10**400]), st.text(max_size=2)
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "edge_types": st.one_of(
                    st.text(max_size=3),
                    st.integers(),
                    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                    st.lists(st.integers(), min_size=1, max_size=2),
                )
            }
        ),
        st.dictionaries(
            st.text(max_size=6).filter(lambda k: k not in RECORD), json_values, min_size=1, max_size=2
        ),
    )
    records = draw(st.lists(corruptions.map(lambda c: {**RECORD, **c}), min_size=1, max_size=3))
    records = [r for r in records if r != RECORD] or [{**RECORD, "query_len": -1}]
    return Bad(name, [records], {}, (f"'rejected': {len(records)}",))


@st.composite
def bad_sweep(draw: st.DrawFn, what: str) -> Bad:
    task = draw(st.sampled_from(sorted(names.SWEEPS.values())))
    sweep = next(k for k, v in names.SWEEPS.items() if v == task)
    if what == "signature":
        return draw(signature_errors(task, {"name": sweep, "interval_s": 60.0}))
    interval = draw(
        st.one_of(
            st.floats(max_value=0),
            st.sampled_from([float("nan"), float("inf"), 10**30, 1e12]),
            not_a_number.filter(lambda v: v is not True),
        )
    )
    return Bad(task, [draw(st.one_of(st.just(sweep), json_values)), interval], {}, ("interval_s",))


registered = {*SIGNATURES, "celery."}
unknown_names = st.one_of(
    st.text(storable_char, min_size=1, max_size=40),
    st.sampled_from(
        ["memtasks.mem_tree.runx", "memtasks.decay", "MEMTASKS.MEM_TREE.RUN", "memtasks.mem_tree.run "]
    ),
).filter(lambda n: n.strip() and n not in registered and not n.startswith("celery."))


@st.composite
def bad_unknown(draw: st.DrawFn, what: str) -> Bad:
    del what
    return Bad(draw(unknown_names), draw(st.lists(json_values, max_size=2)), {}, ("unregistered task",))


ENQUEUE_FIELDS = [
    "kind",
    "payload",
    "tree_id",
    "level",
    "force",
    "dedupe_key",
    "fair_key",
    "delay_s",
    "max_attempts",
    "deep",
]
MUTATIONS: dict[str, st.SearchStrategy[Bad]] = {
    **{f"enqueue:{w}": bad_enqueue(w) for w in ["signature", *ENQUEUE_FIELDS]},
    **{f"run:{w}": bad_run(names.MEM_TREE_RUN, w) for w in ["signature", "job_id"]},
    **{f"decay_run:{w}": bad_run(names.DECAY_RUN, w) for w in ["signature", "job_id"]},
    **{f"drain:{w}": bad_drain(w) for w in ["signature", "kinds", "limit"]},
    **{
        f"decay_enqueue:{w}": bad_decay_enqueue(w)
        for w in ["signature", "kind", "source_ids", "created_by", "method", "delay_s"]
    },
    **{f"records:{w}": bad_records(w) for w in ["signature", "not_a_list", "records"]},
    **{f"sweep:{w}": bad_sweep(w) for w in ["signature", "interval_s"]},
    "unknown_task": bad_unknown("name"),
}
"""One strategy per (task, what is wrong), so each gets its share of the examples."""
FAMILY_TASKS: dict[str, set[str]] = {
    "enqueue": {names.MEM_TREE_ENQUEUE},
    "run": {names.MEM_TREE_RUN},
    "decay_run": {names.DECAY_RUN},
    "drain": {names.MEM_TREE_DRAIN},
    "decay_enqueue": {names.DECAY_ENQUEUE},
    "records": {names.RECORD_RETRIEVAL_FAILURES},
    "sweep": set(names.SWEEPS.values()),  # bad_sweep draws from all of them
    "unknown_task": {"(unknown names)"},
}


def test_every_memtasks_task_is_fuzzed(rig: Rig) -> None:
    """The mutations cover every task name of :mod:`memtasks.worker.names`, which are
    exactly the memtasks tasks the app registers."""
    declared = {
        v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and v.startswith("memtasks.")
    }
    registered_here = {n for n in rig.app.tasks if n.startswith("memtasks.")}
    assert declared == set(SIGNATURES) == registered_here
    families = {mutation.split(":")[0] for mutation in MUTATIONS}
    fuzzed = {task for family in families for task in FAMILY_TASKS[family]}
    assert fuzzed == set(SIGNATURES) | {"(unknown names)"}


def ending(log: str, task_id: str, bad: Bad) -> str | None:
    """The line of ``log`` that ends ``bad``'s message, None while it has not ended."""
    if "unregistered task" in bad.expect:
        pos = log.find(f"'id': '{task_id}'")
        if pos < 0:
            return None
        start = log.rfind("Received unregistered task of type", 0, pos)
        return log[start : log.find("\n", start)] if start >= 0 else None
    # The whole record: a logged result may hold a newline of the message's own text.
    match = re.search(
        rf"^\[[^\n]*\[{task_id}\] (succeeded in|raised unexpected|retry:).*?(?=^\[\d{{4}}-|\Z)",
        log,
        re.MULTILINE | re.DOTALL,
    )
    return match.group(0) if match else None


# ── the property ─────────────────────────────────────────────────────────────


PER_MUTATION = 12


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@fuzz(PER_MUTATION, runs=len(MUTATIONS))
@given(data=st.data())
def test_bad_messages_are_refused_once_and_the_worker_goes_on(
    rig: Rig, mutation: str, data: st.DataObject
) -> None:
    batch = data.draw(st.lists(MUTATIONS[mutation], min_size=1, max_size=3), label="batch")
    before = rig.counts()
    start = len(rig.log())
    sent = [(rig.app.send_task(b.name, args=b.args, kwargs=b.kwargs).id, b) for b in batch]
    sentinel = f"sentinel-{next(_serial)}"
    rig.app.send_task(
        names.MEM_TREE_ENQUEUE,
        kwargs={"kind": "seal", "payload": {"tree_id": sentinel, "level": 0}, "dedupe_key": sentinel},
    )

    deadline = time.monotonic() + SETTLE_S
    while True:
        log = rig.log()
        ended = {task_id: ending(log[start:], task_id, bad) for task_id, bad in sent}
        done = rig.status_of(sentinel) == "done"
        if done and all(ended.values()) and rig.broker_idle():
            break
        assert rig.fleet.processes["w1"].poll() is None, f"the worker exited:\n{log[-5000:]}"
        assert time.monotonic() < deadline, (
            f"not settled in {SETTLE_S} s: sentinel done={done}, "
            f"pending={[b.name for task_id, b in sent if not ended[task_id]]}\n{log[-5000:]}"
        )
        time.sleep(0.02)

    assert rig.counts() == (before[0] + 1, before[1], before[2]), "a bad message inserted a row"
    for task_id, bad in sent:
        line = ended[task_id]
        assert line is not None
        assert f"[{task_id}] retry:" not in line, f"{bad.name} retried: {line}"
        said = line.replace("\\'", "'")  # quotes inside a logged repr are escaped
        assert any(word in said for word in bad.expect), (
            f"{bad} ended with a line that does not say why: {line}"
        )
        if bad.name in SIGNATURES:
            assert log.count(f"[{task_id}] received") == 1, f"{bad.name} [{task_id}] delivered again"
    for marker in ("WorkerLostError", "Unrecoverable error", "exited with 'signal", "exited with 'exitcode"):
        assert marker not in log[start:], f"{marker}:\n{log[start:][-5000:]}"


# ── raw messages: bodies and headers no Celery client would send ─────────────

RAW_TASKS = st.one_of(
    st.sampled_from([names.MEM_TREE_RUN, names.DECAY_RUN]),
    unknown_names,
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
    st.none(),
)
"""Task headers whose valid messages change nothing (a run of a missing job is a no-op)."""

json_bodies = st.one_of(
    json_values,
    st.tuples(json_values, json_values, json_values).map(list),
    st.tuples(st.lists(hostile_ids, max_size=2), json_values, json_values).map(list),
    st.tuples(st.lists(hostile_ids, max_size=2), st.just({}), st.just({})).map(list),
)


@st.composite
def raw_messages(draw: st.DrawFn) -> tuple[bytes, str, str, dict[str, Any]]:
    """(body, content type, content encoding, headers)."""
    import json

    shape = draw(st.sampled_from(["json", "bytes", "foreign", "deep_args", "deep_text"]))
    if shape == "json":
        body, content_type, encoding = json.dumps(draw(json_bodies)).encode(), "application/json", "utf-8"
    elif shape == "deep_args":  # a deep argument the decoder still reads
        depth = draw(st.integers(MAX_PAYLOAD_DEPTH, 900))
        body = f"[[{'[' * depth}0{']' * depth}], {{}}, {{}}]".encode()
        content_type, encoding = "application/json", "utf-8"
    elif shape == "bytes":
        body, content_type, encoding = draw(st.binary(max_size=64)), "application/json", "utf-8"
    elif shape == "foreign":
        body = draw(st.binary(max_size=64))
        content_type = draw(
            st.sampled_from(["application/x-python-serialize", "application/x-yaml", "text/plain", ""])
        )
        encoding = "binary"
    else:  # deeper than any JSON decoder recurses
        depth = draw(st.integers(5_000, 50_000))
        body, content_type, encoding = b"[" * depth + b"]" * depth, "application/json", "utf-8"
    headers: dict[str, Any] = {"lang": "py"}
    if draw(st.booleans()):
        headers["id"] = draw(st.one_of(st.uuids().map(str), json_values))
    task = draw(RAW_TASKS)
    if task is not None:
        headers["task"] = task
    header_names = [
        "retries",
        "timelimit",
        "eta",
        "expires",
        "group",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "shadow",
    ]
    extra = draw(st.dictionaries(st.sampled_from(header_names), json_values, max_size=3))
    return body, content_type, encoding, {**headers, **extra}


@fuzz(60)
@given(st.lists(raw_messages(), min_size=1, max_size=3))
def test_raw_bodies_and_headers_never_stop_the_worker(
    rig: Rig, batch: list[tuple[bytes, str, str, dict[str, Any]]]
) -> None:
    before = rig.counts()
    start = len(rig.log())
    with rig.app.connection_for_write() as connection:
        producer = connection.Producer()
        for body, content_type, encoding, headers in batch:
            producer.publish(
                body,
                exchange=names.DEFAULT,
                routing_key=names.DEFAULT,
                content_type=content_type,
                content_encoding=encoding,
                headers=headers,
            )
    sentinel = f"sentinel-{next(_serial)}"
    rig.app.send_task(
        names.MEM_TREE_ENQUEUE,
        kwargs={"kind": "seal", "payload": {"tree_id": sentinel, "level": 0}, "dedupe_key": sentinel},
    )
    deadline = time.monotonic() + SETTLE_S
    while not (rig.status_of(sentinel) == "done" and rig.broker_idle()):
        log = rig.log()
        assert rig.fleet.processes["w1"].poll() is None, f"the worker exited:\n{log[start:][-5000:]}"
        assert time.monotonic() < deadline, f"not settled in {SETTLE_S} s:\n{log[start:][-5000:]}"
        time.sleep(0.02)
    log = rig.log()[start:]
    assert rig.counts() == (before[0] + 1, before[1], before[2])
    for marker in ("WorkerLostError", "Unrecoverable error", "exited with 'signal", "exited with 'exitcode"):
        assert marker not in log, f"{marker}:\n{log[-5000:]}"
