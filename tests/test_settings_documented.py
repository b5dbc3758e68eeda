"""Every setting is a field of Settings and a row of the README's configuration table.

Read from the text: every ``MEMTASKS_*`` name in the package, the deploy files, the scripts, the
Makefile and the README is a field of :class:`memtasks.config.Settings` (or one of the few
names of :data:`NOT_SETTINGS`, each with its reason), and every field has its row in the table
of the README's "Configuration" section, which names nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memtasks.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SETTING_NAMES = {f"MEMTASKS_{name.upper()}" for name in Settings.model_fields}
NAME = re.compile(r"\bMEMTASKS_[A-Z0-9_]*[A-Z0-9]\b")

NOT_SETTINGS = {
    "MEMTASKS_SERVICES_DIR": "scripts/services.sh: where `make services` keeps the PostgreSQL and Redis "
    "it starts for development; read by that script only, never by memtasks",
}
"""``MEMTASKS_*`` names that are not settings of memtasks, and why. (The tests' own variables
are ``TEST_*``, never ``MEMTASKS_*``.)"""

SCANNED = ("memtasks", "deploy", "scripts", "README.md", "Makefile")
TEXT_SUFFIXES = {"", ".py", ".md", ".txt", ".sh", ".yaml", ".yml", ".tpl", ".ini", ".mako", ".toml"}


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
            continue
        files += [
            p
            for p in path.rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and (p.suffix in TEXT_SUFFIXES or p.name.endswith((".example", ".service")))
        ]
    return sorted(files)


def names_in(text: str) -> set[str]:
    return set(NAME.findall(text))


def test_every_memtasks_variable_in_the_repository_is_a_setting() -> None:
    found: dict[str, set[str]] = {}
    for path in scanned_files():
        for name in names_in(path.read_text(errors="replace")):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    unknown = {
        name: sorted(paths) for name, paths in found.items() if name not in SETTING_NAMES | set(NOT_SETTINGS)
    }
    assert not unknown, f"not fields of memtasks.config.Settings (add them, or to NOT_SETTINGS): {unknown}"
    for name in NOT_SETTINGS:
        assert name in found, f"{name} is no longer used: drop it from NOT_SETTINGS"
        assert name not in SETTING_NAMES
    # The scan reaches the code, the deploy files and the README alike.
    assert {"memtasks/config.py", "README.md", "deploy/compose.yaml"} <= {
        p for ps in found.values() for p in ps
    }


def configuration_table() -> list[str]:
    """The first cells of the rows of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "the README's Configuration section has no table"
    return [row.split("|")[1].strip() for row in rows]


def expand(cell: str) -> list[str]:
    """The variables a first cell names: ``MEMTASKS_A_B`` / ``_C`` is MEMTASKS_A_B and the
    setting that the shorthand ``_C`` completes (MEMTASKS_A_C, else MEMTASKS_C_… shorter)."""
    parts = [part.strip().strip("`") for part in cell.split(" / ")]
    first = parts[0]
    assert first.startswith("MEMTASKS_"), cell
    names = [first]
    words = first.split("_")
    for part in parts[1:]:
        if part.startswith("MEMTASKS_"):
            names.append(part)
            continue
        assert part.startswith("_"), f"{cell}: {part!r} is neither MEMTASKS_… nor a _SUFFIX"
        candidates = ["_".join(words[:k]) + part for k in range(len(words) - 1, 0, -1)]
        names.append(next((c for c in candidates if c in SETTING_NAMES), candidates[0]))
    return names


def test_the_shorthand_of_the_table_expands_to_settings() -> None:
    assert expand("`MEMTASKS_BACKOFF_BASE_S` / `_CAP_S`") == [
        "MEMTASKS_BACKOFF_BASE_S",
        "MEMTASKS_BACKOFF_CAP_S",
    ]
    assert expand("`MEMTASKS_METRICS_PORT` / `_ADDRESS`") == [
        "MEMTASKS_METRICS_PORT",
        "MEMTASKS_METRICS_ADDRESS",
    ]
    assert expand("`MEMTASKS_HANDLERS` / `MEMTASKS_TEXT_MODELS`") == [
        "MEMTASKS_HANDLERS",
        "MEMTASKS_TEXT_MODELS",
    ]
    assert expand("`MEMTASKS_LEASE_S` / `_NOPE`")[1] not in SETTING_NAMES


def test_every_setting_has_a_row_in_the_readme_and_every_row_is_a_setting() -> None:
    documented: list[str] = [name for cell in configuration_table() for name in expand(cell)]
    stale = sorted(set(documented) - SETTING_NAMES)
    assert not stale, f"the README's configuration table names what is not a setting: {stale}"
    missing = sorted(SETTING_NAMES - set(documented))
    assert not missing, f"settings missing from the README's configuration table: {missing}"
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not twice, f"in the README's configuration table twice: {twice}"


def test_every_row_gives_a_default() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith("| `MEMTASKS_"):
            cells = [cell.strip() for cell in line.split("|")[1:-1]]
            assert len(cells) == 3 and cells[1], f"no default: {line[:80]}"
