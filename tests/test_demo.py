"""The main job (`make run`) end to end: a private Redis, a local fleet, a report, nothing left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:  # workers carry the run's database path in their environment
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_the_main_job_starts_its_own_redis_reports_and_stops_everything(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unused = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    env["MEMTASKS_BROKER_URL"] = f"redis://127.0.0.1:{unused}/0"  # nothing answers there
    env["MEMTASKS_LOCK_REDIS_URL"] = f"redis://127.0.0.1:{unused}/1"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "memtasks"), "demo", "--quick", "--timeout", "180"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "started a private one at redis://127.0.0.1:" in output
    assert "stopped every process this run started" in output
    report = json.loads((tmp_path / ".memtasks" / "demo-report.json").read_text())
    assert report["settled"] is True
    assert report["jobs"]["extract_chunk"] == {"done": 160}
    assert report["decay_jobs"] == {"completed": 5}
    assert report["consolidation"]["ran"] >= 1 and report["consolidation"]["outcomes_pruned"] > 0
    failures = report["retrieval_failures"]
    assert failures["stored"] == 100
    # The agent logs at a pace its logger holds: nothing dropped or lost, so nothing to explain.
    assert (failures["logged"], failures["written_by_logger"], failures["dropped"], failures["lost"]) == (
        100,
        100,
        0,
        0,
    )
    assert failures["note"] is None
    assert (
        "retrieval failures: 100 logged by the agent, 100 stored (100 sent by the logger, 0 dropped, 0 lost)"
        in (done.stdout)
    )
    assert report["summaries_by_level"]["1"] >= 20
    assert processes_mentioning(str(tmp_path)) == [], "a process of the run is still alive"
