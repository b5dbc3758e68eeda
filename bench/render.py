"""Render a saved run again (``latest.md``, ``latest.png``, ``readme_table.md`` and its JSON)
from its rounds: the same measurements, judged and written by the current report code.

    python -m bench.render bench/results/<stamp>.json
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from bench.harness.report import Figure, save
from bench.harness.stats import Target

BOUND = re.compile(r"([≥≤])\s*([0-9][0-9,]*(?:\.[0-9]+)?)")


def target_of(text: str) -> Target:
    """The target a report wrote as text (``≥ 0.6×``, ``16 ≥ 0.8× 4``, ``≤ 10 ms``)."""
    found = BOUND.search(text)
    if found is None:
        raise ValueError(f"no bound in target {text!r}")
    return Target(found.group(1), float(found.group(2).replace(",", "")), text)


def figures_of(document: dict[str, Any]) -> list[Figure]:
    made = []
    for row in document["figures"]:
        values = {
            system: [math.nan if v is None else float(v) for v in data["rounds"]]
            for system, data in row["systems"].items()
        }
        ratio_of = (row["ratio_of"][0], row["ratio_of"][1]) if row["ratio_of"] else None
        unit = "jobs/s" if ratio_of and row["unit"] == "×" else row["unit"]
        target = None if row["target"] is None else target_of(row["target"])
        made.append(Figure(row["name"], unit, values, ratio_of, target, row.get("note", "")))
    return made


def main(path: str) -> None:
    document = json.loads(Path(path).read_text())
    figures = figures_of(document)
    save(Path(path).parent, figures, document["meta"], partial=False)
    changed = [f.name for f, row in zip(figures, document["figures"], strict=True) if f.met() != row["met"]]
    print(f"rendered {len(figures)} figures of run {document['meta']['at']}; verdicts changed: {changed}")


if __name__ == "__main__":
    main(sys.argv[1])
