"""The fuzz tier's budget: at least 10,000 Hypothesis examples, counted, not assumed.

This module runs last in the tier (pytest takes a folder's modules in name order). Every
other fuzz module declares each test's examples with ``@fuzz`` and counts the examples that
reach the test body; here the declared total is checked, and — for the tests that ran in
this session — that each ran its whole budget (a strategy too narrow to yield distinct
examples would run fewer, and fail here).
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tests.fuzz
from tests.fuzz.budget import EXECUTED, PLANNED, TIER_MINIMUM

pytestmark = pytest.mark.fuzz


def load_every_fuzz_module() -> None:
    for module in pkgutil.iter_modules(tests.fuzz.__path__):
        if module.name.startswith("test_"):
            importlib.import_module(f"tests.fuzz.{module.name}")


def test_the_tier_declares_at_least_ten_thousand_examples() -> None:
    load_every_fuzz_module()
    assert len(PLANNED) >= 30
    assert sum(PLANNED.values()) >= TIER_MINIMUM, PLANNED


def test_every_fuzz_test_that_ran_ran_its_whole_budget() -> None:
    load_every_fuzz_module()
    short = {
        name: (EXECUTED[name], planned) for name, planned in PLANNED.items() if 0 < EXECUTED[name] < planned
    }
    assert not short, f"ran fewer examples than declared (ran, declared): {short}"
    ran_all = all(EXECUTED[name] for name in PLANNED)
    if ran_all:  # the whole tier ran in this session: its real count
        assert sum(EXECUTED.values()) >= TIER_MINIMUM
