"""The state machine that runs is the domain's: a walk over every SQL transition of the engine.

For both job tables on both databases, every engine statement and every operator action runs
against a row in every phase (and in each variant that picks another branch: attempts left or
spent, a young or an aged deferral). What each really did to the row is recorded under the
statement that ran; then, per statement, the moves seen must be exactly the moves it declares
(``memtasks.storage.queue.statements.MOVES``, ``…queue.admin.MOVES``), and every declared move
must be one ``memtasks.domain.lifecycle.TRANSITIONS`` allows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, update

from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import FrozenClock
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import FailureClass, Lease
from memtasks.domain.lifecycle import TRANSITIONS, Phase
from memtasks.storage.queue import QueueConfig
from memtasks.storage.queue.admin import MOVES as ADMIN_MOVES
from memtasks.storage.queue.statements import MOVES as STATEMENT_MOVES
from tests.storage.queue_subjects import TABLES, Subject, subject

pytestmark = pytest.mark.integration

LEASE_MS = 10_000
MAX_AGE_MS = 60_000
CONFIG = QueueConfig(
    lease_ms=LEASE_MS, policy=RetryPolicy(jitter=0), max_attempts=3, defer_max_age_ms=MAX_AGE_MS
)

Call = Callable[[Subject, str, Lease, FrozenClock], object]


def _retry(q: Subject, job_id: str, _: Lease, __: FrozenClock) -> object:
    try:
        return q.queue.admin.retry(job_id)
    except ValidationError:
        return None  # not failed: refused, nothing changed


def _cancel(q: Subject, job_id: str, _: Lease, __: FrozenClock) -> object:
    return q.queue.admin.cancel(job_id)


CALLS: dict[str, Call] = {
    "claim by id": lambda q, i, _l, _c: q.queue.claim_by_id(i),
    "claim a batch": lambda q, _i, _l, _c: q.queue.claim_batch(10),
    "claim the next": lambda q, _i, _l, _c: q.queue.claim_batch(1),
    "heartbeat": lambda q, _i, lease, _c: q.queue.heartbeat(lease),
    "settle done": lambda q, _i, lease, _c: q.queue.settle_done(lease),
    "settle done, many": lambda q, _i, lease, _c: q.queue.settle_done_many([lease]),
    "settle failed, transient": lambda q, _i, lease, _c: q.queue.settle_failed(lease, "boom"),
    "settle failed, unrecoverable": lambda q, _i, lease, _c: q.queue.settle_failed(
        lease, "bad", FailureClass.UNRECOVERABLE
    ),
    "settle deferred": lambda q, _i, lease, c: q.queue.settle_deferred(lease, c() + 1_000, reason="later"),
    "release": lambda q, _i, lease, _c: q.queue.release([lease]),
    "recover expired": lambda q, _i, _l, _c: q.queue.recover_expired(),
    "mark for dispatch": lambda q, _i, _l, _c: q.queue.mark_for_dispatch(10, redispatch_after_ms=0),
    "forget dispatch": lambda q, i, _l, _c: q.queue.forget_dispatch([i]),
    "postpone": lambda q, i, _l, _c: q.queue.postpone(i, 1_000),
    "requeue_failed": lambda q, _i, _l, _c: q.queue.admin.requeue_failed(),
    "retry": _retry,
    "cancel": _cancel,
    "cancel_ready": lambda q, _i, _l, _c: q.queue.admin.cancel_ready(),
}
VARIANTS = ["fresh", "spent", "aged"]
"""fresh: attempts left, young; spent: its attempts used up; aged: older than the deferral cap."""


def put_in(q: Subject, phase: Phase, variant: str, clock: FrozenClock) -> tuple[str, Lease]:
    """A lone row of ``q``'s table in ``phase``; the lease it holds (a dead one when none)."""
    with q.queue.engine.begin() as conn:
        conn.execute(delete(q.sa_table))
    [job_id] = q.add()
    lease = Lease(job_id, "no-lease")
    if phase is not Phase.READY and phase is not Phase.CANCELLED:
        job = q.queue.claim_by_id(job_id)
        assert job is not None
        lease = job.lease
        if phase is Phase.DONE:
            assert q.queue.settle_done(lease)
        elif phase is Phase.FAILED:
            assert q.queue.settle_failed(lease, "x", FailureClass.UNRECOVERABLE)
    elif phase is Phase.CANCELLED:
        assert q.queue.admin.cancel(job_id)
    if variant == "spent":
        with q.queue.engine.begin() as conn:
            conn.execute(
                update(q.sa_table).where(q.sa_table.c.id == job_id).values(max_attempts=1, attempts=1)
            )
        lease = Lease(lease.job_id, lease.token, 1, 1)
    clock.advance(LEASE_MS + 1 if variant != "aged" else MAX_AGE_MS + 1)  # every lease has expired
    return job_id, lease


@pytest.mark.parametrize("table", TABLES)
def test_every_transition_the_engine_makes_is_one_the_domain_allows(table: str, engine) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    q = subject(table, engine, clock=clock, config=CONFIG)
    names = {s.sql: s.name.upper() for s in q.queue.sql.all()}
    ran: list[str] = []
    run = q.queue._executor.run

    def recording(sql: str, params: Any, conn: Any = None, *, prepare: bool = True) -> Any:
        ran.append(names.get(sql, "?"))
        return run(sql, params, conn, prepare=prepare)

    q.queue._executor.run = recording  # type: ignore[method-assign]
    seen: dict[str, set[tuple[Phase, Phase]]] = defaultdict(set)
    for call_name, call in CALLS.items():
        for before in Phase:
            for variant in VARIANTS:
                job_id, lease = put_in(q, before, variant, clock)
                ran.clear()
                call(q, job_id, lease, clock)
                after = q.table.words.phase(q.word(job_id))
                statements = set(ran) - {"?"}
                who = call_name if not statements else "/".join(sorted(statements))
                if after is not before:
                    assert len(statements) <= 1, (
                        f"{call_name}: {before} → {after} by several statements {ran}"
                    )
                    seen[who].add((before, after))
                else:
                    seen.setdefault(who, set())

    declared = {**STATEMENT_MOVES, **ADMIN_MOVES}
    for who, moves in seen.items():
        assert who in declared, f"{who} ran but declares nothing"
        assert moves == declared[who], (
            f"{table}: {who} made {sorted(moves)}, declares {sorted(declared[who])}"
        )
    assert set(declared) <= set(seen), f"never ran: {sorted(set(declared) - set(seen))}"
    for who, moves in declared.items():
        for current, target in moves:
            assert target in TRANSITIONS[current], f"{who}: {current} → {target} is not in the domain's table"
