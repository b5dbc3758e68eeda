"""A drain's task result names what it ran (Flower shows it)."""

from __future__ import annotations

import pytest

from memtasks.services.mem_tree import Outcome, RunResult
from memtasks.worker.tasks import drain_result

pytestmark = pytest.mark.unit


def test_a_drain_result_names_its_jobs_under_their_outcome_and_counts_kinds() -> None:
    results = [
        RunResult("job:a", "extract_chunk", Outcome.DONE, 1),
        RunResult("job:b", "extract_chunk", Outcome.RETRY, 1, error="boom"),
        RunResult("job:c", "seal_document", Outcome.DONE, 1),
    ]
    assert drain_result(results) == {
        "claimed": 3,
        "done": 2,
        "retry": 1,
        "kinds": {"extract_chunk": 2, "seal_document": 1},
        "jobs": {"done": ["job:a", "job:c"], "retry": ["job:b"]},
    }


def test_an_empty_drain_says_so() -> None:
    assert drain_result([]) == {"claimed": 0, "kinds": {}, "jobs": {}}
