"""kill -9 of a parent with worker processes: the workers die too, and nothing later waits on them."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import CLASSES, PREPARE, start_prepare_data, wait_for

from camlit.data.samples import scan


def live_members(session: int) -> list[int]:
    """Processes of `session` that have not exited (an unreaped zombie holds nothing)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(sid) == session and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_parent(process: subprocess.Popen, grace: float) -> list[int]:
    """SIGKILL only the parent; return the session's processes still alive `grace` seconds later."""
    assert process.poll() is None, "the run ended before it could be killed"
    assert len(live_members(process.pid)) > 1, "no worker processes to orphan"
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_for(lambda: not live_members(process.pid), grace)
    return live_members(process.pid)


def end_session(session: int) -> None:
    """Clean-up for the code before the fix, whose orphans would otherwise live on."""
    for pid in live_members(session):
        os.kill(pid, signal.SIGKILL)


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
        assert kill_parent(process, grace=10) == []
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
