"""Worker processes that die with their parent, so a killed run leaves nothing running behind it."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

from threadpoolctl import threadpool_limits
from tqdm import tqdm

T = TypeVar("T")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have Linux SIGKILL this process when `parent` dies; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before the request took effect.
    if os.getppid() != parent:
        os._exit(1)


# The process that starts a DDP run's other processes (Lightning's launcher) names itself here;
# they inherit the variable.
LAUNCHER = "CAMLIT_LAUNCHER_PID"
# The stop signals a starting DDP rank holds until the ranks have met.
RANK_START_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def launching_ranks() -> Iterator[None]:
    """Around a Trainer's run, which starts a DDP run's other processes: they die with this one.
    Only meanwhile: a process this one starts later for itself (a later job) is left free."""
    before = os.environ.get(LAUNCHER)
    os.environ[LAUNCHER] = str(os.getpid())
    try:
        yield
    except BaseException:
        # Stopped or failed while the other ranks may be waiting on this one: end them first. Left
        # to die with this process, each saw the rendezvous break first and printed a C++ frame
        # dump and a DistNetworkError traceback under the one stop line.
        end_other_ranks()
        raise
    finally:
        if before is None:
            os.environ.pop(LAUNCHER, None)
        else:
            os.environ[LAUNCHER] = before


def end_other_ranks() -> None:
    """SIGKILL the DDP ranks this process started: its children started with this process as
    their LAUNCHER and a LOCAL_RANK other than 0 (Lightning's launcher gives each its own)."""
    if not os.path.isdir("/proc"):
        return
    mine = f"{LAUNCHER}={os.getpid()}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as file:
                parent = int(file.read().rsplit(b")", 1)[1].split()[1])
            if parent != os.getpid():
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                environment = file.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        rank = next((item for item in environment if item.startswith(b"LOCAL_RANK=")), b"LOCAL_RANK=0")
        if mine in environment and rank != b"LOCAL_RANK=0":
            with suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def started_by_launcher() -> bool:
    """Whether this process is one of the DDP ranks that launching_ranks' process started."""
    return os.environ.get(LAUNCHER, str(os.getpid())) != str(os.getpid())


def bind_to_launcher() -> None:
    """In a DDP process that launching_ranks' process started: die with it, or exit at once where it
    is already gone. Lightning starts the other ranks with Popen and nothing ties them to it: after
    a kill -9 of the first, a rank lived on (found waiting alone 54 s later)."""
    launcher = int(os.environ.get(LAUNCHER, 0))
    if not launcher or launcher == os.getpid():
        return
    if os.getppid() == launcher:
        die_with_parent(launcher)
        # A terminal's Ctrl-C and scancel's SIGTERM reach every rank. One still starting died of it
        # with a traceback, and Lightning's launcher then SIGKILLed the first process, stuck waiting
        # for it to join. Held until the ranks have met (RanksMet): the first process stops meanwhile
        # and ends this one. (multiprocessing's resource tracker unblocks both as it starts; a rank
        # starts it with its first pool or loader worker, after the ranks have met.)
        signal.pthread_sigmask(signal.SIG_BLOCK, RANK_START_SIGNALS)
    elif os.getppid() == 1:  # orphaned before it got here
        os._exit(1)


def one_blas_thread(worker_id: int) -> None:
    """A DataLoader worker's init: numpy's BLAS on one thread, as torch puts its own in a worker.
    Each worker's BLAS would otherwise start a thread per core, and camera_table's matrix products
    in every worker at once oversubscribe the cores."""
    threadpool_limits(1, user_api="blas")


class ParentBoundName(str):
    """A process name whose unpickling binds the process to `parent`'s life.

    The name travels in the preparation data, the first thing a spawned child unpickles, before
    it imports its parent's main module (a script's imports take seconds: torch, Lightning). A
    child whose parent dies meanwhile exits at once instead of after those imports.
    """

    def __new__(cls, name: str, parent: int):
        bound = super().__new__(cls, name)
        bound.parent = parent
        return bound

    def __reduce__(self):
        return bound_name, (str(self), self.parent)


def bound_name(name: str, parent: int) -> str:
    die_with_parent(parent)
    return name


class ParentBoundProcess(multiprocessing.context.SpawnProcess):
    """A spawned worker bound to its parent's life (ParentBoundName) that ignores Ctrl-C from its
    first moment on.

    Ctrl-C reaches the whole process group, a worker still importing its modules too: there the
    default handler printed a KeyboardInterrupt traceback under the parent's one stop line. An
    ignored SIGINT stays ignored across exec, and Python keeps it so; the parent ignores it only
    while it starts the worker, with the signal blocked, so that one coming meanwhile waits for
    the parent's own handler (Linux queues a blocked signal even where it is ignored)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = ParentBoundName(self.name, os.getpid())

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            super().start()  # signal handlers are the main thread's to set
            return
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super().start()
        finally:
            signal.signal(signal.SIGINT, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class ParentBoundContext(multiprocessing.context.SpawnContext):
    Process = ParentBoundProcess


class LoaderWorkerProcess(multiprocessing.context.ForkProcess):
    """A DataLoader worker that leaves SIGTERM to its parent and dies with it.

    SLURM's scancel and `timeout` signal the whole process group. A worker that took the signal
    ran the handler it inherited: Lightning's, which under DDP signals the other ranks and starts a
    collective from the worker on the rank's own connections, or died, so that its rank failed its
    next batch alone. Either way the ranks parted and the run hung. The worker is forked with the
    signal blocked and keeps it blocked (torch's worker loop installs a SIGTERM handler of its own,
    which a blocked signal never reaches); a thread takes it, and ends the worker only where the
    parent sent it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.parent = os.getpid()

    def start(self) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def run(self) -> None:
        die_with_parent(self.parent)
        threading.Thread(target=self.end_when_the_parent_asks, daemon=True, name="parent-sigterm").start()
        super().run()

    def end_when_the_parent_asks(self) -> None:
        """SIGTERM from the parent itself still ends the worker, as torch's own handler does:
        that is how torch stops a worker that is slow to stop, and multiprocessing its daemonic
        children at exit (ignored, a process exiting with a loader open waited for ever)."""
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == self.parent:
                os._exit(0)


class LoaderWorkerContext(multiprocessing.context.ForkContext):
    Process = LoaderWorkerProcess


def loader_context() -> multiprocessing.context.BaseContext | None:
    """The multiprocessing context of training's DataLoader workers: LoaderWorkerProcess where
    workers are forked (Linux), else the platform's default."""
    return LoaderWorkerContext() if sys.platform.startswith("linux") else None


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that exit when this process dies, even by kill -9,
    from their first moment on (ParentBoundName).

    spawn, not fork: a forked worker would inherit this process's open files, such as a held
    cache lock, and forking a parent that runs torch or OpenCV threads can deadlock the child.
    Its workers ignore Ctrl-C (leave_interrupts_to_parent).
    """
    return ProcessPoolExecutor(workers, mp_context=ParentBoundContext(), initializer=leave_interrupts_to_parent)


def leave_interrupts_to_parent() -> None:
    """Ctrl-C reaches the whole process group; the parent stops the pool and says so in one line,
    where each worker would print a KeyboardInterrupt traceback. (ParentBoundProcess starts it
    ignoring the signal already, where it can.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def in_parallel(
    function: Callable[..., T], calls: Sequence[tuple], workers: int, progress: str | None = None
) -> Iterator[T]:
    """`function(*call)` for each call, yielded in order; in a `process_pool` when `workers` > 1.

    At most 2 x `workers` calls are in flight, so results held in memory stay bounded however many
    calls there are. On an error, Ctrl-C or an abandoned iteration only the calls already running
    finish. `progress` names a progress bar (none without).
    """
    with tqdm(total=len(calls), desc=progress, disable=progress is None) as bar:
        if workers <= 1 or len(calls) <= 1:
            for call in calls:
                yield function(*call)
                bar.update()
            return
        from camlit.atomic import signals_held  # here: `import camlit` (a DDP rank's start) stays light

        pool = process_pool(min(workers, len(calls)))
        try:
            pending: deque[Future] = deque()
            for call in calls:
                pending.append(pool.submit(function, *call))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
                    bar.update()
            while pending:
                yield pending.popleft().result()
                bar.update()
        finally:
            # A second Ctrl-C inside the shutdown left the pool half stopped, and the exit then
            # waited for ever on its workers. The calls still running are short: one photo each.
            with signals_held():
                pool.shutdown(cancel_futures=True)
