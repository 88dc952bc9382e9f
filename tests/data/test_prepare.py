"""Data preparation: layout, crops equal to manipulate-then-crop, resuming, failures, the script."""

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PREPARE, bomb_png, dead_pid, one_error_line, photo, start_prepare_data, wait_for, write_image

import camlit.data.prepare
from camlit.data.commands import prepare_main, prepare_parser
from camlit.data.crops import center_offset, tile_offsets
from camlit.data.manipulations import MANIPULATIONS, apply, manipulated_crops
from camlit.data.prepare import prepare_dataset
from camlit.errors import CamlitError
from camlit.imageio import read_rgb
from camlit.termination import EXIT_STATUS, INTERRUPT_STATUS

SUBSET = ["unaltered", "jpeg70", "resize0.5", "resize1.5", "gamma1.2"]


@pytest.fixture
def photos(tmp_path) -> Path:
    """2 cameras x 2 photos of 1100x700: JPEGs (one .JPG), a PNG of odd size, and a non-image."""
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    write_image(root / "Cam-A" / "a0.jpg", photo(rng, 700, 1100))
    write_image(root / "Cam-A" / "a1.JPG", photo(rng, 700, 1100))
    write_image(root / "Cam-B" / "b0.jpg", photo(rng, 700, 1100))
    write_image(root / "Cam-B" / "b1.png", photo(rng, 701, 1101))
    (root / "Cam-B" / "notes.txt").write_text("not a photo")
    return root


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREPARE), *args], capture_output=True, text=True)


def test_layout_and_counts(photos, tmp_path):
    out = tmp_path / "out"
    summary = prepare_dataset(photos, out, manipulations=SUBSET, size=256, workers=1, progress=False)
    expected = {
        f"{m}/{cam}/{stem}.png"
        for m in SUBSET
        for cam, stem in [("Cam-A", "a0"), ("Cam-A", "a1"), ("Cam-B", "b0"), ("Cam-B", "b1")]
    }
    assert set(files(out)) == expected | {".prepare.json"}
    assert (summary.photos, summary.written, summary.skipped, summary.failed) == (4, 20, 0, 0)
    assert all(read_rgb(out / name).shape == (256, 256, 3) for name in expected)


@pytest.mark.parametrize("tiles", ["center", 3])
def test_outputs_equal_manipulated_full_frame_then_crop(photos, tmp_path, tiles):
    out = tmp_path / "out"
    # Two processes, so the worker pool is exercised too.
    summary = prepare_dataset(photos, out, tiles=tiles, size=256, workers=2, progress=False)
    assert summary.failed == 0 and not summary.too_small
    count = 0
    for source in [photos / "Cam-A" / "a0.jpg", photos / "Cam-B" / "b1.png"]:
        image = read_rgb(source)
        for name in MANIPULATIONS:
            full = apply(name, image)
            if tiles == "center":
                offsets, names = [center_offset(*full.shape[:2], 256)], [f"{source.stem}.png"]
            else:
                offsets = tile_offsets(*full.shape[:2], 256, tiles)
                names = [f"{source.stem}_t{k}.png" for k in range(len(offsets))]
            for (top, left), file in zip(offsets, names, strict=True):
                written = read_rgb(out / name / source.parent.name / file)
                np.testing.assert_array_equal(written, full[top : top + 256, left : left + 256], err_msg=file)
                count += 1
            assert not (out / name / source.parent.name / f"{source.stem}_t{len(offsets)}.png").exists()
    assert count == (18 if tiles == "center" else 2 * 8 * 3 + 2 * 2)  # resize0.5 leaves room for 2 tiles


@pytest.mark.parametrize("use_ipp", [True, False])
@pytest.mark.parametrize("shape", [(700, 1100), (701, 1099), (1224, 1632)])
def test_windowed_manipulation_is_bit_identical(shape, use_ipp):
    # Windows well inside larger frames, and OpenCV's own resize as well as IPP's where present.
    image = photo(np.random.default_rng(1), *shape)
    previous = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(use_ipp)
    try:
        for name in MANIPULATIONS:
            full = apply(name, image)
            for size, offsets in [
                (128, [center_offset(*full.shape[:2], 128)]),
                (64, tile_offsets(*full.shape[:2], 64, 5)),
            ]:
                crops = manipulated_crops(name, image, offsets, size)
                for (top, left), crop in zip(offsets, crops, strict=True):
                    expected = full[top : top + size, left : left + size]
                    np.testing.assert_array_equal(crop, expected, err_msg=name)
    finally:
        cv2.ipp.setUseIPP(previous)


@pytest.mark.parametrize(
    ("height", "width", "size", "count"),
    [
        (700, 1100, 256, 10),
        (701, 1101, 256, 3),
        (3000, 4000, 512, 100),
        (3000, 4000, 512, 4),
        (513, 512, 512, 9),
    ],
)
def test_tile_offsets_inside_even_and_disjoint(height, width, size, count):
    offsets = tile_offsets(height, width, size, count)
    assert len(offsets) == min(count, (height // size) * (width // size))
    covered = np.zeros((height, width), np.uint8)
    for top, left in offsets:
        assert top % 2 == 0 and left % 2 == 0
        assert 0 <= top and top + size <= height and 0 <= left and left + size <= width
        covered[top : top + size, left : left + size] += 1
    assert covered.max() == 1


def test_a_rerun_with_another_size_or_tiling_is_refused(photos, tmp_path, capsys):
    """The crops already there counted as done: --size 48 after --size 96 left 96 px crops and said
    nothing; --tiles 2 after centre crops mixed both in one folder."""
    out = tmp_path / "out"
    prepare_dataset(photos, out, manipulations=["unaltered"], size=96, workers=1, progress=False)
    before = files(out)
    common = ["--input", str(photos), "--output", str(out), "--manipulations", "unaltered", "--workers", "1"]
    for other in (["--size", "48"], ["--size", "96", "--tiles", "2"]):
        done = run_script(*common, *other)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: --output {out}: prepared with --size 96 --tiles center, not")
    assert files(out) == before
    # The same setting resumes, and another manipulation joins the folder.
    prepare_dataset(photos, out, manipulations=["jpeg70"], size=96, workers=1, progress=False)
    # A folder prepared before the setting was kept: the size of a crop there decides.
    (out / ".prepare.json").unlink()
    with pytest.raises(CamlitError, match="prepared with --size 96 --tiles unknown, not --size 48"):
        prepare_dataset(photos, out, manipulations=["unaltered"], size=48, workers=1, progress=False)
    # A missing input is named as such, not as an output prepared otherwise.
    with pytest.raises(CamlitError, match=f"--input {tmp_path / 'none'}: no such folder"):
        prepare_dataset(tmp_path / "none", out, manipulations=["unaltered"], size=48, workers=1, progress=False)


def test_resume_after_partial_output(photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_dataset(photos, out, tiles=2, manipulations=SUBSET, size=256, workers=1, progress=False)
    complete = files(out)
    (out / "jpeg70" / "Cam-A" / "a0_t1.png").unlink()
    (out / "resize1.5" / "Cam-B" / "b1_t0.png").unlink()
    (out / "unaltered" / "Cam-B" / f".b0_t0.png.tmp{dead_pid()}").write_bytes(b"half a png")
    # Not prepare's to delete: the user's hidden files, and a live writer's temporary file.
    kept = [out / ".notes.tmp.txt", out / ".settings.tmpl", out / "unaltered" / ".draft.tmp"]
    kept.append(out / "jpeg70" / "Cam-A" / f".a1_t0.png.tmp{os.getpid()}")
    for path in kept:
        path.write_text("keep")
    decoded = []
    monkeypatch.setattr(
        camlit.data.prepare, "read_rgb", lambda path, *limit: decoded.append(path) or read_rgb(path, *limit)
    )
    summary = prepare_dataset(photos, out, tiles=2, manipulations=SUBSET, size=256, workers=1, progress=False)
    assert all(path.read_text() == "keep" for path in kept)
    for path in kept:
        path.unlink()
    assert files(out) == complete
    assert (summary.written, summary.skipped) == (2, 2)
    assert sorted(p.name for p in decoded) == ["a0.jpg", "b1.png"]  # complete photos are not decoded
    decoded.clear()
    summary = prepare_dataset(photos, out, tiles=2, manipulations=SUBSET, size=256, workers=1, progress=False)
    assert (summary.written, summary.skipped, decoded) == (0, 4, [])


def test_killed_run_resumes(tmp_path):
    process, args, out = start_prepare_data(tmp_path, photos=12, height=600, width=800)
    deadline = time.monotonic() + 20
    while not any(out.rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    expected = 9 * 12 * 4
    assert 0 < len(list(out.rglob("*.png"))) < expected
    result = run_script(*args, "--workers", "1")
    assert result.returncode == 0, result.stderr
    reference = tmp_path / "reference"
    prepare_dataset(tmp_path / "train", reference, tiles=4, size=128, workers=1, progress=False)
    assert len(files(reference)) == expected + 1  # and .prepare.json
    assert files(out) == files(reference)  # same names and bytes, no temporary files


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGTERM, EXIT_STATUS), (signal.SIGINT, INTERRUPT_STATUS)])
def test_a_signal_to_the_process_group_stops_with_whole_images_and_a_rerun_finishes(tmp_path, stop, status):
    """As a scheduler stops a job (SIGTERM), or Ctrl-C in a terminal (SIGINT): every process of the
    group gets it. The run says so in one line, exits 143 or 130, and leaves only whole images; a
    rerun makes the rest and removes the temporary file a worker stopped mid-write may leave."""
    process, args, out = start_prepare_data(tmp_path, photos=12, height=600, width=800, stderr=subprocess.PIPE)
    assert wait_for(lambda: any(out.rglob("*.png")), timeout=60)
    assert process.poll() is None, "the run ended before it could be stopped"
    os.killpg(process.pid, stop)
    _, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()
    assert process.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr
    name = signal.Signals(stop).name
    assert [line for line in stderr.splitlines() if line.startswith(f"stopped by {name}: every image written is whole")]
    written = list(out.rglob("*.png"))
    assert 0 < len(written) < 9 * 12 * 4
    assert all(read_rgb(path).shape == (128, 128, 3) for path in written)
    assert run_script(*args, "--workers", "1").returncode == 0
    assert len(list(out.rglob("*.png"))) == 9 * 12 * 4
    assert not [path for path in out.rglob("*") if ".tmp" in path.name]


def test_ctrl_c_twice_to_the_process_group_stops_it_with_its_one_line(tmp_path):
    """The second Ctrl-C landed in the pool's shutdown and left it half stopped: after its stop
    line the process waited for ever on its workers (7 of 7 in a review), until a third."""
    process, _, out = start_prepare_data(tmp_path, photos=12, height=600, width=800, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: any(out.rglob("*.png")), timeout=60)
        assert process.poll() is None, "the run ended before it could be stopped"
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stderr = stderr.decode()
    assert process.returncode == INTERRUPT_STATUS, stderr[-2000:]
    assert "Traceback" not in stderr
    stopped = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    assert stopped == ["stopped by SIGINT: every image written is whole; rerun to make the rest"]


def test_unreadable_and_colliding_inputs_are_listed_and_end_with_an_error(photos, tmp_path, capsys):
    """The summary listed them, and the command exited 0, so a script went on to fit a set with
    photos missing."""
    (photos / "Cam-A" / "broken.jpg").write_bytes(b"not a JPEG " * 50)
    (photos / "Cam-A" / "empty.png").write_bytes(b"")
    write_image(photos / "Cam-B" / "b0.png", photo(np.random.default_rng(3), 300, 300))
    out = tmp_path / "out"
    args = ["--input", str(photos), "--output", str(out), "--manipulations", "unaltered", "--size", "256",
            "--workers", "1"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        prepare_main(args)
    said = capsys.readouterr()
    lines = said.out.splitlines()
    named = [name for line in lines[:-1] for name in ("broken.jpg", "empty.png", "b0.png") if name in line]
    assert sorted(named) == ["b0.png", "broken.jpg", "empty.png"]
    assert all(line.startswith("failed: ") for line in lines[:-1])
    assert "7 photos: 4 files written, 0 photos already complete, 3 failed" in lines[-1]
    assert exit_info.value.code == 2 and "Traceback" not in said.err
    assert [line for line in said.err.splitlines() if line.startswith("error:")] == [
        f"error: --input {photos}: 3 photo(s) not prepared (the failed: lines above); every other crop is "
        "written: fix or remove those photos and rerun, which makes only what is missing"
    ]
    assert sorted(p.name for p in out.rglob("*.png")) == ["a0.png", "a1.png", "b0.png", "b1.png"]
    for bad in ("broken.jpg", "empty.png"):
        (photos / "Cam-A" / bad).unlink()
    (photos / "Cam-B" / "b0.png").rename(photos / "Cam-B" / "b2.png")
    summary = prepare_main(args)
    assert (summary.photos, summary.written, summary.skipped, summary.failed) == (5, 1, 4, 0)


def test_photos_beside_the_camera_folders_are_named_as_left_out(photos, tmp_path, capsys):
    """They were left out without a word: no camera folder says which camera took them."""
    write_image(photos / "loose.jpg", photo(np.random.default_rng(5), 300, 300))
    summary = prepare_main(["--input", str(photos), "--output", str(tmp_path / "out"), "--manipulations", "unaltered",
                            "--size", "256", "--workers", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert f"warning: --input {photos}: 1 image(s) beside the camera folders left out: loose.jpg" in err
    assert summary.photos == 4 and not list((tmp_path / "out").rglob("loose*"))


def test_kaggles_download_root_as_input_is_refused_naming_its_train_folder(photos, tmp_path, capsys):
    """Given the download root (train/<camera>/, test/*.tif), its test/ became a camera and train/
    was passed over, without a word."""
    root = photos.parent
    write_image(root / "test" / "img_0_unalt.tif", photo(np.random.default_rng(6), 300, 300))
    output = root.parent / f"{root.name}-prepared"
    args = ["--input", str(root), "--output", str(output), "--size", "256", "--workers", "1"]
    line = one_error_line(capsys, lambda: prepare_main(args))
    assert line == (
        f"error: --input {root}: {photos} holds camera folders, not photos; give --input {photos} "
        "(expected <input>/<camera>/*.jpg)"
    )
    assert not output.exists()


def test_too_small_outputs_are_listed_and_not_retried(tmp_path, monkeypatch):
    source = tmp_path / "train"
    write_image(source / "Cam" / "small.jpg", photo(np.random.default_rng(4), 400, 600))
    kwargs = dict(manipulations=["unaltered", "resize0.5"], size=256, workers=1, progress=False)
    summary = prepare_dataset(source, tmp_path / "out", **kwargs)
    assert summary.written == 1 and len(summary.too_small) == 1 and "resize0.5" in summary.too_small[0]
    monkeypatch.setattr(camlit.data.prepare, "read_rgb", lambda path, *_: pytest.fail(f"{path} decoded again"))
    assert prepare_dataset(source, tmp_path / "out", **kwargs).skipped == 1


def test_a_run_that_makes_nothing_or_writes_into_its_input_is_refused(tmp_path, capsys):
    source = tmp_path / "train"
    write_image(source / "Cam" / "small.jpg", photo(np.random.default_rng(4), 100, 150))
    (source / "Cam" / "broken.jpg").write_bytes(b"not a jpeg")
    line = one_error_line(capsys, lambda: prepare_main(["--input", str(source), "--output", str(tmp_path / "out"),
                                                        "--size", "256", "--workers", "1"]))  # fmt: skip
    assert "no crop made: 1 photo(s) failed and 9 output(s) are smaller than --size 256" in line
    assert "broken.jpg" in line
    assert not (tmp_path / "out").exists()  # nothing made, nothing left: no empty tree, no .prepare.json
    # Nor the folders above the output that it made (new/deeper stayed), nor one it did not (kept).
    (tmp_path / "keep").mkdir()
    nested = tmp_path / "keep" / ".." / "new" / "deeper" / "out"
    one_error_line(capsys, lambda: prepare_main(["--input", str(source), "--output", str(nested),
                                                 "--size", "256", "--workers", "1"]))  # fmt: skip
    assert not (tmp_path / "new").exists() and (tmp_path / "keep").is_dir()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("the user's")
    one_error_line(capsys, lambda: prepare_main(["--input", str(source), "--output", str(tmp_path / "kept"),
                                                 "--size", "256", "--workers", "1"]))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]
    for inside in (source, source / "prepared"):
        args = ["--input", str(source), "--output", str(inside)]
        line = one_error_line(capsys, lambda args=args: prepare_main(args))
        assert f"--output {inside}: inside --input {source}" in line
    assert sorted(p.name for p in source.rglob("*")) == ["Cam", "broken.jpg", "small.jpg"]
    # The input inside the output (`--output .`): it was refused for another reason, a size guessed
    # from its own photos.
    line = one_error_line(capsys, lambda: prepare_main(["--input", str(source), "--output", str(tmp_path)]))
    assert f"--input {source}: inside --output {tmp_path}" in line


def test_a_decompression_bomb_is_listed_unread(tmp_path):
    source = tmp_path / "train"
    write_image(source / "Cam-0" / "p0.jpg", photo(np.random.default_rng(5), 300, 400))
    bomb_png(source / "Cam-0" / "bomb.png")
    summary = prepare_dataset(source, tmp_path / "out", manipulations=["unaltered"], size=128, workers=1)
    assert summary.written == 1 and len(summary.failures) == 1
    assert "bomb.png: 20000x20000" in summary.failures[0] and "over the limit of 89,478,485" in summary.failures[0]
    raised = prepare_parser().parse_args(["--input", "a", "--output", "b", "--max_pixels", "400000000"])
    assert raised.max_pixels == 400_000_000


def test_an_unwritable_output_is_refused_before_any_work(photos, read_only_folder, capsys, monkeypatch):
    monkeypatch.setattr(camlit.data.prepare, "_results", lambda *args: pytest.fail("prepared first"))
    output = read_only_folder / "data-512"
    line = one_error_line(capsys, lambda: prepare_main(["--input", str(photos), "--output", str(output)]))
    assert line.startswith(f"error: --output {output}: cannot write in {read_only_folder}")


def test_bad_manipulation_name_exits_2_with_one_line(photos, tmp_path):
    result = run_script("--input", str(photos), "--output", str(tmp_path / "out"), "--manipulations", "jpeg70,jpeg50")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "'jpeg50'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["missing", "empty", "no-images"])
def test_missing_or_empty_input(tmp_path, layout, capsys):
    source = tmp_path / "train"
    if layout != "missing":
        source.mkdir()
    if layout == "no-images":
        (source / "Cam").mkdir()
        (source / "Cam" / "notes.txt").write_text("")
    with pytest.raises(ValueError) as error_info:
        prepare_dataset(source, tmp_path / "out", progress=False)
    assert isinstance(error_info.value, CamlitError)
    with pytest.raises(SystemExit) as exit_info:
        prepare_main(["--input", str(source), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and str(source) in error[0]


def test_unknown_manipulation_is_one_line(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare_main(["--input", str(photos), "--output", str(tmp_path / "out"), "--manipulations", "jpeg70,jpeg50"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --manipulations: unknown 'jpeg50'; choose from unaltered, jpeg70, jpeg90, resize0.5, resize0.8, "
        "resize1.5, resize2.0, gamma0.8, gamma1.2"
    ]
    assert not (tmp_path / "out").exists()


def test_a_zombie_writer_is_not_running(tmp_path):
    """A worker killed with its group stays a zombie until reaped; its temporary files are stale."""
    from camlit.atomic import is_running, stale_temporaries

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 60)
    (tmp_path / f".a.png.tmp{child.pid}").write_bytes(b"half")
    assert not is_running(child.pid) and stale_temporaries(tmp_path, (".png",)) == [tmp_path / f".a.png.tmp{child.pid}"]
    child.wait()
    assert is_running(os.getpid())


@pytest.mark.parametrize(("option", "value"), [("--workers", "0"), ("--workers", "-1"), ("--size", "0")])
def test_a_count_below_one_is_one_error_line(tmp_path, capsys, option, value):
    args = ["--input", str(tmp_path / "train"), "--output", str(tmp_path / "out"), option, value]
    line = one_error_line(capsys, lambda: prepare_main(args))
    assert line == f"error: {option} must be at least 1, got {value}"
    assert not (tmp_path / "out").exists()


def test_a_size_below_the_smallest_crop_is_refused(tmp_path, capsys):
    """3 px crops were written, which neither fit nor predict can take."""
    args = ["--input", str(tmp_path / "train"), "--output", str(tmp_path / "out"), "--size", "3"]
    (tmp_path / "train" / "HTC-1-M7").mkdir(parents=True)
    line = one_error_line(capsys, lambda: prepare_main(args))
    assert line.startswith("error: --size must be at least 4, the smallest crop fit and predict take")
    assert not (tmp_path / "out").exists()


def test_tiles_of_an_odd_size_are_refused(tmp_path, capsys):
    """Tiles of 75 px side by side fell on odd offsets (75, 150, ...), off the 2x2 colour grid."""
    (tmp_path / "train" / "HTC-1-M7").mkdir(parents=True)
    args = ["--input", str(tmp_path / "train"), "--output", str(tmp_path / "out"), "--size", "75", "--tiles", "4"]
    line = one_error_line(capsys, lambda: prepare_main(args))
    assert line == "error: --size 75: tiles need an even size to stay on even offsets"
    assert not (tmp_path / "out").exists()


def test_a_folder_where_a_crop_goes_is_a_failure_not_a_crop(photos, tmp_path, capsys):
    """A folder at a crop's name counted as the crop made: the photo was left out of the set, and
    prepare exited 0."""
    out = tmp_path / "out"
    (out / "unaltered" / "Cam-A" / "a0.png").mkdir(parents=True)
    args = ["--input", str(photos), "--output", str(out), "--manipulations", "unaltered", "--size", "256",
            "--workers", "1"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        prepare_main(args)
    said = capsys.readouterr()
    assert exit_info.value.code == 2 and "Traceback" not in said.err
    assert f"failed: {photos / 'Cam-A' / 'a0.jpg'}: {out / 'unaltered' / 'Cam-A' / 'a0.png'} is not a file" in said.out
    assert sorted(p.name for p in out.rglob("*.png") if p.is_file()) == ["a1.png", "b0.png", "b1.png"]
    (out / "unaltered" / "Cam-A" / "a0.png").rmdir()
    assert prepare_main(args).written == 1


def test_a_setting_that_is_a_folder_is_refused_before_any_folder_is_made(photos, tmp_path, capsys):
    out = tmp_path / "out"
    (out / ".prepare.json").mkdir(parents=True)
    args = ["--input", str(photos), "--output", str(out), "--manipulations", "unaltered", "--size", "256"]
    line = one_error_line(capsys, lambda: prepare_main(args))
    assert line == f"error: --output {out}: its .prepare.json is not a file; prepare into another folder"
    assert sorted(p.name for p in out.iterdir()) == [".prepare.json"]
