"""SIGTERM, as SLURM and Kubernetes send it before they stop a job: stop, keep what is whole, exit 143.
Ctrl-C (SIGINT) ends every command the same way, with exit status 130; in fit, a second Ctrl-C
stops at once without saving (`interrupt_as_sigterm`).

`on_sigterm()` turns the signal into a `Terminated` exception where it lands, so that every
`finally` and every atomic write cleans up behind it. A training run defers it instead
(`watch.defer()`): Lightning's own handler, composed with this one, stops the loops after the
current batch, and camlit.training.cli saves a checkpoint there before it exits.

SLURM's scancel and `timeout` signal the whole process group. Training's loader workers leave
SIGTERM to their process (camlit.workers.LoaderWorkerProcess, on Linux); other loader workers take
it, and torch's SIGCHLD handler would then raise "DataLoader worker is killed" from wherever the
main thread is, mid-step. A watch quiets SIGCHLD once the signal came, so a step finishes; a
loader that is waited on finds its workers gone and raises at a batch boundary, which
camlit.training.callbacks.stopped_by_sigterm recognises.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# 128 + SIGTERM, the status a shell reports for a process ended by it; schedulers read it as preempted.
EXIT_STATUS = 128 + signal.SIGTERM
INTERRUPT_STATUS = 128 + signal.SIGINT


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, so that no `except Exception` swallows it."""


class Interrupted(BaseException):
    """SIGINT arrived. Not a KeyboardInterrupt: Lightning ends those itself with a bare exit status 1."""


def interrupt_in(owner: int):
    """A SIGINT handler for process `owner`. A loader worker forked from it inherits the handler;
    there it raises KeyboardInterrupt, on which torch's workers end quietly and leave the one line
    to the parent."""

    def handler(signum, frame) -> None:
        if os.getpid() != owner:
            raise KeyboardInterrupt
        quiet_sigchld()
        raise Interrupted

    return handler


def quiet_sigchld():
    """SIGCHLD to a handler that does nothing, returning the handler before: a signal to the whole
    group stops the loader workers too, and torch's handler would raise "DataLoader worker is
    killed" from wherever the main thread is (a second traceback while the stop unwinds, or
    mid-step in training). Not SIG_DFL: a SIGCHLD already caught but not yet handled would then
    raise "Signal 17 ignored due to race condition" (an OSError, seen in a DDP barrier)."""
    return signal.signal(signal.SIGCHLD, ignore_signal)


def ignore_signal(signum, frame) -> None:
    """A handler that does nothing."""


class SigtermWatch:
    """The handler: raises Terminated at once until `defer()`, after that only notes the signal
    (and quiets SIGCHLD until the watch ends, see above)."""

    def __init__(self) -> None:
        self.received = False
        self.deferred = False
        self.sigchld_before = None
        self.signum = signal.SIGTERM  # the signal that stopped it: SIGINT when Ctrl-C took this path

    def defer(self) -> None:
        self.deferred = True

    def __call__(self, signum, frame) -> None:
        first = not self.received
        self.received = True
        if first:
            self.signum = signum
            self.sigchld_before = quiet_sigchld()
            if not self.deferred:
                raise Terminated

    def restore(self) -> None:
        if self.sigchld_before is not None:
            signal.signal(signal.SIGCHLD, self.sigchld_before)
            self.sigchld_before = None


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
        watch.restore()


@contextmanager
def interrupt_handled(watch: SigtermWatch) -> Iterator[None]:
    """Ctrl-C stops the run as SIGTERM does while the block runs (only the main thread can handle it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupt_as_sigterm(watch))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_terminated(what: str, signum: int = signal.SIGTERM) -> None:
    """One line saying what the signal stopped and what is kept, then exit status 143 (130 for
    SIGINT). The other processes of a DDP run exit without it: the first says it once for all."""
    if speaks_for_the_run():
        print(f"stopped by {signal.Signals(signum).name}: {what}", file=sys.stderr)
    raise SystemExit(128 + signum)


def speaks_for_the_run() -> bool:
    """Whether this process is the first (or only) one of its run: Lightning gives each the rank
    its launcher set as it is imported. Not imported here: a stop while a command still imports
    would wait seconds for it."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    return rank_zero is None or getattr(rank_zero.rank_zero_only, "rank", 0) == 0


def interrupt_as_sigterm(watch: SigtermWatch):
    """A SIGINT handler for a training run: the first Ctrl-C takes SIGTERM's path through whatever
    handles SIGTERM now (Lightning's, composed with `watch`), so the run stops after the current
    batch and saves there. A second raises KeyboardInterrupt: at once, Lightning's own stop, no
    save. A loader worker, which a terminal's Ctrl-C reaches too, ignores it and is ended by the
    run as it stops: a worker dying mid-batch could leave the run a half-sent batch and a traceback."""
    owner = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != owner:
            return
        if watch.received:
            raise KeyboardInterrupt
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            # As SIGTERM itself: Lightning passes the number on to a DDP run's other processes,
            # where a SIGINT would be their second Ctrl-C.
            if callable(sigterm):
                sigterm(signal.SIGTERM, frame)
        finally:
            watch.signum = signal.SIGINT

    return handler


@contextmanager
def exit_on_signal(kept: str) -> Iterator[None]:
    """A command's ending for SIGTERM or SIGINT in the block: its `finally`s and atomic writes clean
    up, then one line saying what is `kept`, and exit status 143 or 130. Training defers SIGTERM
    instead (camlit.training.cli)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, interrupt_in(os.getpid())) if in_main else None
    sigchld = signal.getsignal(signal.SIGCHLD)
    try:
        with on_sigterm():
            yield
    except Terminated:
        exit_terminated(kept)
    except (Interrupted, KeyboardInterrupt):
        exit_terminated(kept, signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGCHLD, sigchld)


# Set by ending_as_it_was: the command is over, and only the interpreter's shutdown is left.
ENDED: list[bool] = []


def ignore_signals_once_ended() -> None:
    """The last atexit callback (registered as camlit is imported, before any library's). After it
    the interpreter puts the handlers Python set back to the defaults, and its teardown (about a
    second with torch loaded) ended a finished command by a signal. Ignored from here on."""
    if ENDED:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


atexit.register(ignore_signals_once_ended)


def ending_as_it_was(code: object) -> None:
    """After a command's last line: a signal while the interpreter shuts down (atexit callbacks of
    loggers and worker pools) ends the process with the status it was ending with. A second Ctrl-C
    there printed a traceback from inside those callbacks, and a signal after the success line
    ended a finished command by that signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    status = code if isinstance(code, int) else 0 if code is None else 1
    # Flushed now: os._exit leaves buffered output unwritten, and a flush inside the handler could
    # land in the middle of another write to the same stream.
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()

    def handler(signum, frame) -> None:
        os._exit(status)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    ENDED.append(True)
