"""Worker processes that die with their parent, so a killed run leaves nothing running behind it."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have Linux SIGKILL this process when `parent` dies; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before the request took effect.
    if os.getppid() != parent:
        os._exit(1)


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
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = ParentBoundName(self.name, os.getpid())


class ParentBoundContext(multiprocessing.context.SpawnContext):
    Process = ParentBoundProcess


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes that exit when this process dies, even by kill -9,
    from their first moment on (ParentBoundName).

    spawn, not fork: a forked worker would inherit this process's open files, such as a held
    cache lock, and forking a parent that runs torch or OpenCV threads can deadlock the child.
    """
    return ProcessPoolExecutor(workers, mp_context=ParentBoundContext())
