"""SIGTERM, as SLURM and Kubernetes send it before they stop a job: stop, keep what is whole, exit 143.

`on_sigterm()` turns the signal into a `Terminated` exception where it lands, so that every
`finally` and every atomic write cleans up behind it. A training run defers it instead
(`watch.defer()`): Lightning's own handler, composed with this one, stops the loops after the
current batch, and camlit.training.cli saves a checkpoint there before it exits.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# 128 + SIGTERM, the status a shell reports for a process ended by it; schedulers read it as preempted.
EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, so that no `except Exception` swallows it."""


class SigtermWatch:
    """The handler: raises Terminated at once until `defer()`, after that only notes the signal."""

    def __init__(self) -> None:
        self.received = False
        self.deferred = False

    def defer(self) -> None:
        self.deferred = True

    def __call__(self, signum, frame) -> None:
        first = not self.received
        self.received = True
        if first and not self.deferred:
            raise Terminated


@contextmanager
def on_sigterm() -> Iterator[SigtermWatch]:
    """SIGTERM handled by a SigtermWatch while the block runs (only the main thread can have one)."""
    watch = SigtermWatch()
    if threading.current_thread() is not threading.main_thread():
        yield watch
        return
    previous = signal.signal(signal.SIGTERM, watch)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_terminated(what: str) -> None:
    """One line saying what the signal stopped and what is kept, then exit status 143."""
    print(f"stopped by SIGTERM: {what}", file=sys.stderr)
    raise SystemExit(EXIT_STATUS)
