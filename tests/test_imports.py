"""Importing memtasks does nothing: no environment read, no connection, nothing patched.

Run in a fresh interpreter with invalid ``MEMTASKS_*`` values and no Redis or database to be
reached: every face and the worker's app module import, and afterwards kombu's Redis
``Channel`` is still kombu's own, memtasks' code read no environment variable and no socket
was opened.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.pipeline.fleet import ROOT

pytestmark = pytest.mark.unit

PROBE = """
import os, socket, sys
from collections.abc import MutableMapping

read = []
PLUMBING = {"<frozen _collections_abc>", os.__file__}

class Watching(MutableMapping):
    def __init__(self, env): self.env = env
    def __getitem__(self, key):
        frame = sys._getframe(1)
        while frame.f_code.co_filename in PLUMBING:  # Mapping.get, os.getenv
            frame = frame.f_back
        if "/memtasks/" in frame.f_code.co_filename:  # read by memtasks itself, not by a library
            read.append((key, frame.f_code.co_filename, frame.f_lineno))
        return self.env[key]
    def __setitem__(self, key, value): self.env[key] = value
    def __delitem__(self, key): del self.env[key]
    def __iter__(self): return iter(self.env)
    def __len__(self): return len(self.env)
    def copy(self): return dict(self.env)

os.environ = Watching(os.environ)
opened = []
real_connect = socket.socket.connect
def connect(self, address):
    opened.append(address)
    return real_connect(self, address)
socket.socket.connect = connect

import kombu.transport.redis as redis_transport
channel = redis_transport.Transport.Channel
import memtasks.producer, memtasks.worker.app, memtasks.worker.tasks, memtasks.cli, memtasks.metrics
import memtasks.client, memtasks.command
import memtasks.services.fleet, memtasks.storage.queue
assert redis_transport.Transport.Channel is channel, "kombu's Redis Channel was replaced"
assert not read, f"environment read at import: {read}"
assert not opened, f"connections opened at import: {opened}"
print("nothing happened")
"""

BAD = {
    "MEMTASKS_LEASE_S": "0",
    "MEMTASKS_BROKER_URL": "redis://127.0.0.1:1/0",
    "MEMTASKS_LOCK_REDIS_URL": "not a url",
    "MEMTASKS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    "MEMTASKS_BEAT_INTERVALS": "{not json",
    "MEMTASKS_POOL_SIZE": "-3",
}


def test_importing_memtasks_with_bad_settings_and_nothing_reachable_does_nothing() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT), "PYTHONPATH": str(ROOT), **BAD}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "nothing happened"


def test_the_plain_import_exits_zero_with_bad_settings() -> None:
    """``python -c "import memtasks.producer"``, as a user's agent process would."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ROOT), **BAD}
    for module in ("memtasks.producer", "memtasks.worker.app"):
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{module}: {done.stderr[-2000:]}"
