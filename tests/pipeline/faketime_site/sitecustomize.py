"""Loaded (as ``sitecustomize``) only by the processes the clock-skew test runs under
libfaketime. libfaketime fakes the wall clock; with its monotonic clock left true
(``FAKETIME_DONT_FAKE_MONOTONIC=1``, or every timed wait on a lock or condition hangs) it
answers Python's ``clock_nanosleep`` with EINVAL, so ``time.sleep`` waits on an event instead
(a timed wait on the true monotonic clock)."""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds > 0:
        threading.Event().wait(seconds)


time.sleep = _sleep
