"""Sweep slots: one claim per slot, however many ticks arrive at once."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from memtasks.domain.clock import FrozenClock
from memtasks.storage.sweeps_repo import Sweeps
from tests.helpers import all_at_once

pytestmark = pytest.mark.integration


def test_one_claim_per_slot_under_concurrency(engine: Engine, clock: FrozenClock) -> None:
    sweeps = Sweeps(engine, clock=clock)
    claims = all_at_once(6, lambda: sweeps.claim_slot("consolidate", 60_000))
    assert sorted(claims, key=lambda c: c is None)[0] == clock() // 60_000
    assert sum(c is not None for c in claims) == 1
    assert sweeps.claim_slot("consolidate", 60_000) is None
    clock.advance(60_000)
    assert sweeps.claim_slot("consolidate", 60_000) == clock() // 60_000


def test_finish_records_the_outcome(engine: Engine, clock: FrozenClock) -> None:
    sweeps = Sweeps(engine, clock=clock)
    slot = sweeps.claim_slot("prune_finished", 1_000)
    assert slot is not None
    clock.advance(250)
    sweeps.finish("prune_finished", slot, ok=False, detail="RuntimeError: x" * 500)
    [record] = sweeps.all()
    assert (record.outcome, record.finished_at_ms - record.started_at_ms) == ("failed", 250)
    assert record.detail is not None and len(record.detail) == 2_000
