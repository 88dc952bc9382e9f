"""kill -9 of a parent with worker processes: the workers die too, and nothing later waits on them."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CLASSES,
    PREPARE,
    blocked_signals,
    end_session,
    kill_parent,
    live_members,
    random_image,
    start_prepare_data,
    wait_for,
    write_image,
)

from camlit.data.samples import scan
from camlit.workers import LAUNCHER, launching_ranks

BUILD = textwrap.dedent(
    """
    import logging, sys
    import camlit.data.cache
    if __name__ == "__main__":  # not in the spawned workers
        logging.basicConfig(level=logging.INFO)
        if sys.argv[1] == "slow":
            import slow_decode
            camlit.data.cache.decode_chunk = slow_decode.decode_chunk
        camlit.data.cache.build_cache(sys.argv[2], sys.argv[3:], 32, workers=2)
        print("built")
    """
)
SLOW_DECODE = textwrap.dedent(
    """
    import time
    from camlit.data.cache import decode_chunk as decode

    def decode_chunk(paths, size, max_pixels):
        time.sleep(1)
        return decode(paths, size, max_pixels)
    """
)


def test_kill_during_a_parallel_cache_build_leaves_no_workers_and_no_lock(flat_tree, tmp_path):
    (tmp_path / "build.py").write_text(BUILD)
    (tmp_path / "slow_decode.py").write_text(SLOW_DECODE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cache = tmp_path / "cache"
    paths = [s.path for s in scan(flat_tree, CLASSES)]
    command = [sys.executable, str(tmp_path / "build.py")]
    process = subprocess.Popen([*command, "slow", str(cache), *paths], env=env, start_new_session=True)
    try:

        def growing():
            return any(p.stat().st_size > 0 for p in cache.glob(".images-*.tmp*"))

        assert wait_for(growing, 120), "the build never started writing"
        assert kill_parent(process, grace=1.5) == []  # torch's own watch takes up to 5 s
    finally:
        end_session(process.pid)
    rerun = subprocess.run([*command, "fast", str(cache), *paths], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "built" in rerun.stdout, rerun.stderr


def test_a_builder_waiting_for_the_lock_says_who_holds_it(flat_tree, tmp_path):
    import fcntl

    (tmp_path / "build.py").write_text(BUILD)
    cache = tmp_path / "cache"
    cache.mkdir()
    paths = [s.path for s in scan(flat_tree, CLASSES)]
    with open(cache / ".camlit-cache.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        process = subprocess.Popen(
            [sys.executable, str(tmp_path / "build.py"), "fast", str(cache), *paths],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = process.stderr.readline()
        assert "waiting for process 4242" in waiting and ".camlit-cache.lock" in waiting
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and "built" in out, err


def test_kill_of_prepare_data_stops_its_workers(tmp_path):
    process, args, out = start_prepare_data(tmp_path, photos=8, height=1200, width=1600)
    try:
        assert wait_for(lambda: any(out.rglob("*.png")), 120), "no output before the kill"
        # Before the fix the workers went on with their queued photos, seconds each.
        assert kill_parent(process, grace=1.0) == []
    finally:
        end_session(process.pid)
    rerun = subprocess.run([sys.executable, str(PREPARE), *args, "--workers", "1"], capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr


SLOW_MAIN = textwrap.dedent(
    """
    import os, sys, time
    if __name__ == "__mp_main__":  # a worker importing its parent's script, as fit.py's imports take seconds
        time.sleep(60)
    from camlit.workers import process_pool
    if __name__ == "__main__":
        with process_pool(2) as pool:
            print(pool.submit(os.getpid).result())
    """
)


def test_workers_killed_at_their_start_do_not_outlive_the_parent(tmp_path):
    """Before the fix a worker noticed its dead parent only after importing the parent's script."""
    (tmp_path / "slow_main.py").write_text(SLOW_MAIN)
    process = subprocess.Popen([sys.executable, str(tmp_path / "slow_main.py")], start_new_session=True)
    try:
        assert wait_for(lambda: len(live_members(process.pid)) == 3, 60), "the workers never started"
        assert kill_parent(process, grace=5) == []
    finally:
        end_session(process.pid)


LOADER = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch.utils.data import DataLoader, Dataset
    from camlit.workers import loader_context

    class Pids(Dataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, index):
            return os.getpid()

    if __name__ == "__main__":
        loader = DataLoader(Pids(), num_workers=1, multiprocessing_context=loader_context(), persistent_workers=True)
        items = iter(loader)
        print(int(next(items)), flush=True)
        for line in sys.stdin:  # one item per line read, from the same worker; "exit" leaves it open
            if line.strip() == "exit":
                sys.exit(0)
            print(int(next(items)), flush=True)
    """
)


def start_loader(tmp_path) -> tuple[subprocess.Popen, int]:
    (tmp_path / "loader.py").write_text(LOADER)
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "loader.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    return process, int(process.stdout.readline())


WORKER_START = """
import os, signal, multiprocessing.context
from camlit.workers import ParentBoundContext

def report(queue):
    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)

if __name__ == "__main__":
    caught = []
    signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    spawn_start = multiprocessing.context.SpawnProcess.start

    def start_under_ctrl_c(process):  # Ctrl-C to the group while the worker starts
        os.kill(os.getpid(), signal.SIGINT)
        spawn_start(process)

    multiprocessing.context.SpawnProcess.start = start_under_ctrl_c
    context = ParentBoundContext()
    queue = context.Queue()
    worker = context.Process(target=report, args=(queue,))
    worker.start()
    print(queue.get(timeout=60), signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL), caught)
    worker.join()
"""


def test_a_pool_worker_ignores_ctrl_c_from_its_start_and_the_parent_still_gets_it(tmp_path):
    """A worker still importing its modules printed a KeyboardInterrupt traceback when Ctrl-C
    reached the group (seen once in the prepare signal test): it now starts ignoring
    SIGINT, and the Ctrl-C that came meanwhile reaches the parent's handler once it is started."""
    script = tmp_path / "start.py"
    script.write_text(WORKER_START)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["True", "True", "[True]"]


def test_a_training_loader_worker_leaves_sigterm_to_its_parent(tmp_path):
    """scancel signals the whole group: the worker must neither die nor run the parent's handler
    (under DDP, Lightning's starts a collective), and its rank stops it as the run ends."""
    process, worker = start_loader(tmp_path)
    try:
        os.kill(worker, signal.SIGTERM)
        process.stdin.write("next\n")
        process.stdin.flush()
        assert int(process.stdout.readline()) == worker
        assert worker in live_members(process.pid)
    finally:
        end_session(process.pid)


def test_a_process_that_exits_with_a_loader_open_ends_its_worker(tmp_path):
    """multiprocessing ends daemonic children at exit with SIGTERM, which the worker never sees:
    the process waited for it for ever (a test suite's run hung at its end)."""
    process, worker = start_loader(tmp_path)
    try:
        process.stdin.write("exit\n")
        process.stdin.flush()
        assert process.wait(timeout=60) == 0
        assert wait_for(lambda: worker not in live_members(process.pid), timeout=5)
    finally:
        end_session(process.pid)


def test_a_training_loader_worker_dies_with_its_parent(tmp_path):
    process, worker = start_loader(tmp_path)
    try:
        assert kill_parent(process, grace=1.5) == []  # torch's own watch takes up to 5 s
    finally:
        end_session(process.pid)


@pytest.mark.slow
def test_the_ranks_of_a_ddp_prediction_die_with_the_first(ckpt, tmp_path):
    """Lightning starts the other ranks with Popen; a kill -9 of the first left one waiting alone."""
    process = start_ddp_prediction(ckpt, tmp_path, subprocess.DEVNULL)
    try:
        assert kill_parent(process, grace=5) == []
    finally:
        end_session(process.pid)


def start_ddp_prediction(ckpt, folder: Path, stderr) -> subprocess.Popen:
    """`camlit predict --devices 2` on 40 photos, in a session of its own, once its second rank runs."""
    rng = np.random.default_rng(0)
    for k in range(40):
        write_image(folder / "photos" / f"p{k}.png", random_image(rng, 64, 64))
    args = ["--ckpt_path", str(ckpt), "--input", str(folder / "photos"), "--output", str(folder / "s.csv"),
            "--crops", "3", "--num_workers", "0", "--no_progress", "--device", "cpu", "--devices", "2"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "camlit", "predict", *args], cwd=folder, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert wait_for(lambda: len(live_members(process.pid)) > 1, timeout=120), "no second rank started"
    return process


@pytest.mark.slow
@pytest.mark.parametrize("to", ["first_process", "group", "group_while_starting"])
def test_ranks_of_a_ddp_prediction_stopped_by_a_signal_end_without_a_word(ckpt, tmp_path, to):
    """A SIGINT to the first process alone: the other rank saw the rendezvous break before it died
    with it, and printed a C++ frame dump and a DistNetworkError traceback under the stop line. A
    terminal's Ctrl-C, to the group: each rank printed the stop line. The same while the second
    rank was still importing torch and Lightning: it died of it with a KeyboardInterrupt traceback,
    and Lightning's launcher SIGKILLed the first process (exit 137)."""
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = start_ddp_prediction(ckpt, tmp_path, stderr)
    try:
        said = (tmp_path / "stderr.txt").read_text
        if to == "group":
            assert wait_for(lambda: "GLOBAL_RANK: 1" in said(), timeout=120), "the second rank never joined"
        if to == "group_while_starting":
            second = next(pid for pid in live_members(process.pid) if pid != process.pid)
            assert wait_for(lambda: signal.SIGINT in blocked_signals(second), timeout=30), "it holds no signal"
            assert "GLOBAL_RANK: 1" not in said()
        os.killpg(process.pid, signal.SIGINT) if to.startswith("group") else process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert wait_for(lambda: not live_members(process.pid), 5)
    finally:
        end_session(process.pid)
    said = [
        line for line in (tmp_path / "stderr.txt").read_text().splitlines() if not line.startswith(("INFO", "Init"))
    ]
    assert said == [f"stopped by SIGINT: {tmp_path / 's.csv'} not written (any older file there is as it was)"]


def test_ranks_are_bound_to_this_process_only_while_a_trainer_runs(monkeypatch):
    """A job this process starts later for itself must not die with it."""
    monkeypatch.delenv(LAUNCHER, raising=False)
    with launching_ranks():
        assert os.environ[LAUNCHER] == str(os.getpid())
    assert LAUNCHER not in os.environ
