"""Worker processes that die with their parent, so a killed run leaves nothing running behind it."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

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


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that exit when this process dies, even by kill -9.

    spawn, not fork: a forked worker would inherit this process's open files, such as a held
    cache lock, and forking a parent that runs torch or OpenCV threads can deadlock the child.
    """
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),))


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
            pool.shutdown(cancel_futures=True)
