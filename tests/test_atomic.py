"""Whole-file writes: never half a file, and never a rename over something that is not a file."""

import os
import signal
import stat
import threading

import pytest

import camlit.atomic
from camlit.atomic import file_target, require_writable, write_all_atomic, write_bytes_atomic
from camlit.errors import CamlitError


def test_a_link_to_a_file_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "target.csv").write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "real" / "target.csv")
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and (tmp_path / "real" / "target.csv").read_text() == "new"


@pytest.mark.parametrize("kind", ["fifo", "link_to_a_folder", "dangling_link"])
def test_what_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path, kind):
    """A rename over a pipe, a device or a link replaced it with the file (as root, even /dev/null)."""
    path = tmp_path / "out.csv"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_to_a_folder":
        path.symlink_to(tmp_path)
    else:
        path.symlink_to(tmp_path / "nowhere.csv")
    before = os.lstat(path)
    with pytest.raises(CamlitError, match=f"--output {path}: "):
        file_target(path, "--output")
    with pytest.raises(CamlitError, match=str(path)):
        write_bytes_atomic(path, b"rows")
    after = os.lstat(path)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("link", ["dangling", "loop"])
@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
def test_a_link_on_the_way_that_leads_nowhere_is_refused_before_the_work(tmp_path, link, folder):
    """The check walked past it to the working folder, and the write's mkdir failed on it after
    the work with a FileExistsError traceback."""
    way = tmp_path / "way"
    way.symlink_to(tmp_path / "nowhere" if link == "dangling" else way)
    output = way / "sub" / ("out" if folder else "out.csv")
    with pytest.raises(CamlitError, match=f"--output {output}: {way} is a link that leads nowhere"):
        require_writable(output, "--output", folder=folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["way"]


def test_a_name_of_up_to_255_bytes_is_written_and_a_longer_one_refused_before_the_work(tmp_path):
    """The temporary file's name added `.` and `.tmp<pid>`: a 250-byte output name was refused
    after all the work, with a message about a name the user never gave."""
    longest = tmp_path / ("é" * 125 + "x.csv")  # 255 bytes in UTF-8
    require_writable(longest, "--output")
    write_bytes_atomic(longest, b"rows")
    assert longest.read_bytes() == b"rows" and [p.name for p in tmp_path.iterdir()] == [longest.name]
    too_long = tmp_path / "sub" / ("a" * 256 + ".csv")
    with pytest.raises(CamlitError, match=r"--output .*: a name in it is longer than the 255 bytes"):
        require_writable(too_long, "--output")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("other_thread", [False, True], ids=["main_thread_only", "with_another_thread"])
def test_a_stop_during_a_sets_renames_comes_after_the_last(tmp_path, monkeypatch, other_thread):
    """SIGTERM between the renames of predict's CSV and its --probs left a new file beside an older
    one. Held by a signal mask it still did so where another thread ran: the kernel gave the signal
    to that thread, and Python ran the handler in the main thread between the renames."""
    idle = threading.Event()
    if other_thread:
        threading.Thread(target=idle.wait, daemon=True).start()
    first, second = tmp_path / "submission.csv", tmp_path / "probs.csv"
    first.write_text("older\n")
    second.write_text("older\n")
    real_replace = os.replace

    def signalled_at_the_first(source, target):
        real_replace(source, target)
        if target == first:
            os.kill(os.getpid(), signal.SIGTERM)

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    monkeypatch.setattr(camlit.atomic.os, "replace", signalled_at_the_first)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stopped):
            write_all_atomic({first: b"new\n", second: b"new\n"})
    finally:
        signal.signal(signal.SIGTERM, previous)
        idle.set()
    assert first.read_text() == second.read_text() == "new\n"
