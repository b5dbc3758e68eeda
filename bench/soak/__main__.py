"""``python -m bench.soak [--minutes N]``: run the soak, print its verdict, save bench/results/soak.json."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench.chaos.settings import ROOT
from bench.soak.run import SoakSettings, run

DEFAULT_OUT = ROOT / "bench" / "results" / "soak.json"


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--rate", type=float, default=40.0, help="jobs enqueued per second (default 40)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument(
        "--fault-every", type=float, default=120.0, help="seconds between faults (default 120)"
    )
    parser.add_argument(
        "--pg",
        choices=("private", "shared"),
        default="private",
        help="private: a PostgreSQL cluster of the run's own with the server's defaults (default);"
        " shared: a database on TEST_POSTGRES_URL's server, as that server is set",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    settings = SoakSettings(
        minutes=args.minutes,
        rate_per_s=args.rate,
        sample_s=args.sample,
        fault_every_s=args.fault_every,
        pg=args.pg,
    )
    # SIGTERM unwinds like Ctrl-C: the fleet, Redis and the run's database are torn down.
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="memtasks-soak-"))
    try:
        figures = run(settings, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"soak: {figures['enqueued']:,} jobs over {settings.minutes:g} min, {figures['samples']} samples")
    for name, m in figures.get("memory", {}).items():
        print(
            f"  {name:<6} RSS {m['warmup_peak_mb']:>7.1f} MB in the warm-up → {m['end_mb']:>7.1f} MB"
            f" at the end (bound {m['bound_mb']:.1f})"
        )
    for key, c in figures.get("connections", {}).items():
        print(f"  {key:<15} {c['warmup_peak']} → {c['end_peak']} (bound {c['bound']})")
    table = figures.get("job_table")
    if table:
        print(
            f"  job table      {table['warmup_peak_mb']:.1f} MB in the warm-up → {table['end_mb']:.1f} MB"
            f" at the end (bound {table['bound_mb']:.1f})"
        )
    print(
        f"  done rows peak {figures.get('done_rows_peak')} (bound {figures.get('done_rows_bound')}),"
        f" faults {len(figures['faults'])}"
    )
    print(
        "soak: " + ("every bound holds" if figures["ok"] else "FAILED: " + "; ".join(figures["violations"]))
    )
    print(f"figures saved to {args.out}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
