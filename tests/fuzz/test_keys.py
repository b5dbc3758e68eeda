"""Ids and dedupe keys full of SQL metacharacters (``'`` ``"`` ``;`` ``--`` ``%`` ``_`` ``\\``),
NUL, lone surrogates and unicode, against a real SQLite file and a real PostgreSQL.

Storable text is stored and found again exactly, and touches no other row; text no column
can hold (NUL, lone surrogates) is refused as a validation error before the database, so
PostgreSQL never sees a half-written transaction or a ``DataError``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from memtasks.domain.decay import DecayKind, DecaySpec, DecayState
from memtasks.domain.errors import JobNotFound, MalformedPayload, ValidationError
from memtasks.domain.jobs import MAX_DEDUPE_KEY_CHARS, JobKind, JobStatus, NewJob
from memtasks.domain.text import unstorable
from memtasks.storage.decay_queue import DecayJob, DecayJobs
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import Job, MemTreeJobs
from memtasks.storage.memory_tables import mem_tree_chunks
from memtasks.storage.tables import decay_jobs, mem_tree_jobs
from memtasks.storage.tree_repo import NewChunk, TreeStore
from tests.fuzz.budget import attempt, fuzz
from tests.fuzz.strategies import anything, hostile_text, ident, unstorable_text

pytestmark = [pytest.mark.fuzz, pytest.mark.integration, pytest.mark.postgres]

BACKENDS = 2  # each test runs on SQLite and on PostgreSQL (``module_db_url``)
_serial = itertools.count()


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(mem_tree_jobs)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(decay_jobs)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(mem_tree_chunks)).scalar_one()),
        )


class Bystanders:
    """One row of each table that no example may change."""

    def __init__(self, engine: Engine) -> None:
        self.jobs = MemTreeJobs(engine)
        self.decay = DecayJobs(engine)
        job_id = self.jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "bystander", "level": 0}, "bystander"))
        assert job_id is not None
        self.job_id = job_id
        self.decay_id = self.decay.enqueue(
            DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_b",)), created_by="b"
        )
        self.job: Job | None = self.jobs.get(self.job_id)
        self.decay_job: DecayJob | None = self.decay.get(self.decay_id)

    def assert_untouched(self) -> None:
        assert self.jobs.get(self.job_id) == self.job
        assert self.decay.get(self.decay_id) == self.decay_job


_bystanders: dict[str, Bystanders] = {}


def setup(url: str) -> tuple[Engine, Bystanders]:
    """This test's engine (the registry is reset after each test) and the module's bystanders."""
    engine = get_engine(url)
    if url not in _bystanders:
        _bystanders[url] = Bystanders(engine)
    bystanders = _bystanders[url]
    bystanders.jobs.engine = bystanders.decay.engine = engine
    return engine, bystanders


dedupe_keys = st.one_of(
    ident(MAX_DEDUPE_KEY_CHARS),
    hostile_text.filter(str.strip),
    st.sampled_from(["%", "_", "'", "''", "\\", "%%", "a%", "_a_", "--", ";", '"', "\\'", "\\%"]),
    unstorable_text(),
)


@fuzz(150, runs=BACKENDS)
@given(
    st.lists(dedupe_keys, min_size=1, max_size=4, unique=True),
    st.lists(st.one_of(hostile_text, hostile_text.map(lambda s: f"{s}\x00{s}")), max_size=3),
)
def test_dedupe_keys_and_payload_text_are_stored_and_found_exactly(
    module_db_url: str, keys: list[str], notes: list[str]
) -> None:
    engine, bystanders = setup(module_db_url)
    jobs = bystanders.jobs
    before = counts(engine)
    inserted: list[tuple[str, str, dict[str, Any]]] = []
    for key in keys:
        # Free payload text may hold a NUL: it is stored escaped (\u0000), never raw.
        payload: dict[str, Any] = {"tree_id": "fuzz", "level": 0, "notes": notes}
        job = attempt(lambda: NewJob(JobKind.SEAL, payload, key), MalformedPayload)  # noqa: B023
        if isinstance(job, MalformedPayload):
            assert "dedupe_key" in str(job)
            assert unstorable(key) is not None
            continue
        job_id = jobs.enqueue(job)
        assert job_id is not None, f"{key!r} deduped against another key"
        assert jobs.enqueue(job) is None, f"{key!r} not deduped against itself"
        inserted.append((job_id, key, payload))
    assert counts(engine) == (before[0] + len(inserted), before[1], before[2])
    for job_id, key, payload in inserted:
        row = jobs.get(job_id)
        assert row is not None
        assert row.dedupe_key == key
        assert row.payload() == payload
        with engine.connect() as conn:
            found = conn.execute(
                select(mem_tree_jobs.c.id).where(
                    mem_tree_jobs.c.dedupe_key == key, mem_tree_jobs.c.status == "ready"
                )
            ).all()
        assert [r.id for r in found] == [job_id]
    for job_id, _, _ in inserted:
        assert jobs.admin.cancel(job_id) is True  # frees the key for later examples
    bystanders.assert_untouched()


lookups = st.one_of(
    ident(),
    hostile_text,
    unstorable_text(),
    st.sampled_from(["%", "job:%", "_", "job:________-____-____-____-____________", "' OR '1'='1", "dj_%"]),
    anything,
)


@fuzz(200, runs=BACKENDS)
@given(lookups)
def test_hostile_ids_find_nothing_and_change_nothing(module_db_url: str, job_id: Any) -> None:
    engine, bystanders = setup(module_db_url)
    jobs, decay = bystanders.jobs, bystanders.decay
    before = counts(engine), jobs.admin.count_by_state(), decay.admin.count_by_state()
    assert jobs.get(job_id) is None
    assert jobs.claim(job_id) is None
    assert isinstance(attempt(lambda: jobs.admin.cancel(job_id), JobNotFound), JobNotFound)
    assert isinstance(attempt(lambda: jobs.admin.retry(job_id), JobNotFound), JobNotFound)
    assert decay.get(job_id) is None
    for call in (lambda: decay.claim(job_id), lambda: decay.admin.cancel(job_id)):
        refused = attempt(call, ValidationError)
        assert isinstance(refused, ValidationError)
        assert refused.code == "decay.job.not_found"
    assert (counts(engine), jobs.admin.count_by_state(), decay.admin.count_by_state()) == before
    bystanders.assert_untouched()


@fuzz(100, runs=BACKENDS)
@given(
    st.one_of(ident(50), unstorable_text(40)),
    st.one_of(ident(), unstorable_text()),
    st.one_of(ident(128), unstorable_text()),
    st.one_of(hostile_text, unstorable_text()),
    st.one_of(st.none(), ident(128), unstorable_text()),
)
def test_chunk_ids_and_text_are_stored_and_found_exactly(
    module_db_url: str, chunk_id: str, tree_id: str, source_id: str, content: str, doc_id: str | None
) -> None:
    engine, bystanders = setup(module_db_url)
    store = TreeStore(engine)
    chunk_id = f"{chunk_id}#{next(_serial)}"  # unique across examples, still hostile
    before = counts(engine)
    texts = [chunk_id, tree_id, source_id, content] + ([] if doc_id is None else [doc_id])
    chunk = attempt(lambda: NewChunk(chunk_id, tree_id, source_id, content, doc_id), MalformedPayload)
    if isinstance(chunk, MalformedPayload):
        assert any(unstorable(t) is not None for t in texts)
        assert counts(engine) == before
        return
    assert all(unstorable(t) is None for t in texts)
    store.add_chunks([chunk])
    with engine.connect() as conn:
        stored = store.get_chunk(conn, chunk_id)
    assert stored is not None
    assert (stored.id, stored.tree_id, stored.source_id, stored.content, stored.doc_id) == (
        chunk_id,
        tree_id,
        source_id,
        content,
        doc_id,
    )
    assert counts(engine) == (before[0], before[1], before[2] + 1)
    bystanders.assert_untouched()


@fuzz(100, runs=BACKENDS)
@given(
    st.one_of(ident(128), unstorable_text(), st.text(min_size=129, max_size=140), anything),
    st.lists(
        st.one_of(ident(60).map(lambda s: "mem_" + s), unstorable_text().map(lambda s: "mem_" + s)),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_decay_jobs_keep_who_asked_and_their_sources_exactly(
    module_db_url: str, created_by: Any, source_ids: list[str]
) -> None:
    engine, bystanders = setup(module_db_url)
    decay = bystanders.decay
    before = counts(engine)

    def enqueue() -> str:
        return decay.enqueue(
            DecaySpec(DecayKind.CANDIDATE_COMPRESSION, tuple(source_ids)), created_by=created_by
        )

    job_id = attempt(enqueue, ValidationError)
    if isinstance(job_id, ValidationError):
        assert job_id.code == "decay.job.malformed"
        assert counts(engine) == before
        return
    assert isinstance(created_by, str) and unstorable(created_by) is None and len(created_by) <= 128
    job = decay.get(job_id)
    assert job is not None
    assert job.created_by == created_by
    assert job.spec().source_ids == tuple(source_ids)
    assert job.state is DecayState.PENDING
    assert decay.admin.cancel(job_id) is True
    assert counts(engine) == (before[0], before[1] + 1, before[2])
    bystanders.assert_untouched()


def test_the_status_the_examples_leave_behind_is_only_cancelled(module_db_url: str) -> None:
    """After the examples above: every fuzz row was cancelled, the bystanders are ready."""
    engine, bystanders = setup(module_db_url)
    by_status = bystanders.jobs.admin.count_by_state()
    assert by_status[JobStatus.READY] == 1  # the bystander
    assert by_status[JobStatus.RUNNING] == by_status[JobStatus.DONE] == by_status[JobStatus.FAILED] == 0
    by_state = bystanders.decay.admin.count_by_state()
    assert by_state[DecayState.PENDING] == 1
    bystanders.assert_untouched()
    assert counts(engine)[0] == 1 + by_status[JobStatus.CANCELLED]
