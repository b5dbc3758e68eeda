"""Figures and how they are saved: ``latest.json``, ``latest.md``, ``latest.png`` and the
README's table (``readme_table.md``)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.stats import Spread, Target, ratios


@dataclass
class Figure:
    """One measured quantity: each system's value per round; optionally the ratio of two of
    its systems (round by round) and a target on the ratio — or, with one system, on it."""

    name: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)
    ratio_of: tuple[str, str] | None = None
    target: Target | None = None
    note: str = ""

    def ratio(self) -> Spread | None:
        if self.ratio_of is None:
            return None
        top, bottom = self.ratio_of
        return Spread.of(ratios(self.values[top], self.values[bottom]))

    def judged(self) -> Spread | None:
        """What the target applies to: the ratio, or the only system's values."""
        ratio = self.ratio()
        if ratio is not None:
            return ratio
        if len(self.values) == 1:
            return Spread.of(next(iter(self.values.values())))
        return None

    def met(self) -> bool | None:
        judged = self.judged()
        return None if self.target is None or judged is None else self.target.met(judged)

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio()
        return _finite(
            {
                "name": self.name,
                "unit": self.unit,
                "systems": {
                    system: {"median": s.median, "low": s.low, "high": s.high, "rounds": values}
                    for system, values in self.values.items()
                    for s in [Spread.of(values)]
                },
                "ratio_of": list(self.ratio_of) if self.ratio_of else None,
                "ratio": None
                if ratio is None
                else {"median": ratio.median, "low": ratio.low, "high": ratio.high},
                "target": None if self.target is None else self.target.text,
                "met": self.met(),
                "note": self.note,
            }
        )


def _finite(value: Any) -> Any:
    """NaN (a round that measured nothing) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def digits(unit: str) -> int:
    return 0 if unit in {"jobs/s", "records/s"} else 2


def table(figures: list[Figure]) -> list[str]:
    lines = [
        "| figure | system | median (lowest–highest round) | unit | ratio (spread) | target | met |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for f in figures:
        ratio = f.ratio()
        met = f.met()
        first = True
        for system, values in f.values.items():
            cells = [f.name if first else "", system, Spread.of(values).text(digits(f.unit)), f.unit]
            if first:
                cells += [
                    "" if ratio is None else f"{ratio.median:.2f}× ({ratio.low:.2f}–{ratio.high:.2f})",
                    "" if f.target is None else f.target.text,
                    "" if met is None else ("yes" if met else "**no**"),
                ]
            else:
                cells += ["", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
            first = False
    return lines


def save(results: Path, figures: list[Figure], meta: dict[str, Any], *, partial: bool) -> Path:
    """Write the run. A partial run (``--only``) writes ``partial-<stamp>.json`` and leaves
    ``latest.*`` alone."""
    results.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "figures": [f.as_json() for f in figures]}
    stamped = results / f"{'partial-' if partial else ''}{meta['at']}.json"
    stamped.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    if partial:
        return stamped
    (results / "latest.json").write_text(json.dumps(document, indent=2, ensure_ascii=False))
    header = (
        f"Run {meta['at']} ({'quick' if meta['quick'] else 'full'}, {meta['cpus']} CPUs, "
        f"{meta['rounds']} rounds interleaved, {meta['jobs']:,} jobs per run, "
        f"{meta['processes']} worker processes per system)"
    )
    notes = [f"- **{name}**: {text}" for name, text in meta.get("notes", {}).items()]
    body = [header, "", *table(figures), "", "Notes:", "", *notes]
    (results / "latest.md").write_text("\n".join(body) + "\n")
    (results / "readme_table.md").write_text("\n".join(table(figures)) + "\n")
    chart(
        results / "latest.png",
        [f for f in figures if f.unit == "jobs/s" and len(f.values) > 1 and "÷" not in f.name],
    )
    return results / "latest.json"


def chart(path: Path, figures: list[Figure]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] matplotlib is not installed: no chart", flush=True)
        return
    if not figures:
        return
    fig, axes = plt.subplots(len(figures), 1, figsize=(10, 1.0 + 0.42 * sum(len(f.values) for f in figures)))
    if len(figures) == 1:
        axes = [axes]
    for ax, f in zip(axes, figures, strict=True):
        names = list(f.values)
        spreads = [Spread.of(f.values[n]) for n in names]
        medians = [s.median for s in spreads]
        errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        colors = ["#4c72b0" if n.startswith("memtasks") else "#999999" for n in names]
        ax.barh(names, medians, xerr=errors, color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f.name, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("jobs/s — median of the rounds, bars from the lowest to the highest round")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_count() -> int:
    return os.cpu_count() or 1


__all__ = ["Figure", "chart", "save", "table"]
