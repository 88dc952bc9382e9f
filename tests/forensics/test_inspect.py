import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import add_unusable_files, one_error_line, random_image, small_tmpfs, write_image

from camlit.forensics.inspect_command import main


def run(ckpt, source, output, *extra):
    return main(["--ckpt_path", str(ckpt), "--input", str(source), "--output", str(output), "--device", "cpu", *extra])


def test_inspect_writes_the_grid_the_mask_the_picture_and_a_summary(ckpt, tmp_path):
    photo = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 80, 112))
    summary = run(ckpt, photo, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["photo.json", "photo_map.png", "photo_mask.png", "photo_tiles.npz"]
    with np.load(out / "photo_tiles.npz") as grid:
        # 32 px tiles on a stride of 16: 4 rows x 6 columns, on even offsets.
        assert grid["probabilities"].shape == (4, 6, 3) and grid["tops"].tolist() == [0, 16, 32, 48]
        np.testing.assert_allclose(grid["probabilities"].sum(axis=-1), 1, rtol=1e-5)
        assert grid["flat"].shape == grid["clipped"].shape == (4, 6)
    assert cv2.imread(str(out / "photo_mask.png"), cv2.IMREAD_UNCHANGED).shape == (80, 112)
    assert json.loads((out / "photo.json").read_text()) == summary and summary["tiles"] == 24


@pytest.mark.parametrize(
    ("case", "message"),
    [("folder", "a folder"), ("fifo", "not a regular file"), ("loop", "no such file (a link that leads nowhere)")],
)
def test_an_input_that_is_not_a_file_is_named_for_what_it_is(ckpt, tmp_path, capsys, case, message):
    source = tmp_path / "photo.png"
    if case == "folder":
        source.mkdir()
    elif case == "fifo":
        os.mkfifo(source)
    else:
        source.symlink_to(source)
    assert one_error_line(capsys, lambda: run(ckpt, source, tmp_path / "out")) == f"error: --input {source}: {message}"
    assert one_error_line(capsys, lambda: run(ckpt, source, "")) == "error: --output: an empty value; give one"


@pytest.mark.parametrize("case", ["missing", "zero.jpg", "text.jpg", "tiny.png", "gray.png", "output_is_a_file"])
def test_inspect_refuses_bad_input_with_one_error_line(ckpt, tmp_path, capsys, case):
    add_unusable_files(tmp_path)
    output = tmp_path / "out"
    source = tmp_path / ("nothing.png" if case == "missing" else case)
    if case == "output_is_a_file":
        source = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 64, 64))
        output.write_text("a file")
    line = one_error_line(capsys, lambda: run(ckpt, source, output))
    assert str(output if case == "output_is_a_file" else source) in line
    assert not output.is_dir()


def test_a_combination_takes_its_parts_thresholds_and_refuses_one_threshold_for_both(ckpt, tmp_path, capsys):
    photo = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 80, 112))
    summary = run(ckpt, photo, tmp_path / "out")  # the default method
    assert summary["method"] == "lattice_then_disagreement"
    assert summary["threshold"] == {"lattice": 0.1, "lattice_after_gamma": 0.45, "disagreement": 7.96}  # measured ones
    assert summary["decided_by"] == "disagreement"  # a random photo shows no JPEG table
    both = ["--method", "lattice_then_disagreement", "--threshold", "1"]
    line = one_error_line(capsys, lambda: run(ckpt, photo, tmp_path / "again", *both))
    assert line.startswith("error: --threshold: lattice_then_disagreement tries lattice then disagreement")
    assert not (tmp_path / "again").exists()


def test_inspect_refuses_an_output_folder_it_cannot_make_before_the_model_runs(ckpt, tmp_path, capsys):
    photo = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 64, 64))
    (tmp_path / "afile").write_text("a file")
    line = one_error_line(capsys, lambda: run(ckpt, photo, tmp_path / "afile" / "sub"))
    assert line.startswith(f"error: --output {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file")


def test_inspect_refuses_to_write_over_its_input(ckpt, tmp_path, capsys):
    """A PNG named photo.json in the output folder would have become the summary (here through a
    hard link: the photo's own folder is refused as an output anyway)."""
    photo = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 64, 64))
    disguised = tmp_path / "photo.json"
    photo.rename(disguised)
    (tmp_path / "out").mkdir()
    os.link(disguised, tmp_path / "out" / "photo.json")
    before = disguised.read_bytes()
    line = one_error_line(capsys, lambda: run(ckpt, disguised, tmp_path / "out"))
    assert line.startswith(f"error: --input {disguised}: inspect would write over it")
    assert disguised.read_bytes() == before


def test_inspect_writes_neither_beside_the_photo_nor_into_a_run(ckpt, tmp_path, capsys):
    """Its map and mask beside the photo were read as photos by the next predict of the folder (the
    grey mask unusable); a run's checkpoints folder took its files as predict's would not."""
    photo = write_image(tmp_path / "photos" / "a.png", random_image(np.random.default_rng(0), 64, 64))
    line = one_error_line(capsys, lambda: run(ckpt, photo, tmp_path / "photos" / "."))
    assert line.startswith(f"error: --output {tmp_path / 'photos'}: the photo's own folder")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "b.png").symlink_to(photo)  # the link's folder is read as photos too, not only its target's
    line = one_error_line(capsys, lambda: run(ckpt, linked / "b.png", linked))
    assert line.startswith(f"error: --output {linked}: the photo's own folder")
    assert [p.name for p in linked.iterdir()] == ["b.png"]
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(ckpt.read_bytes())
    line = one_error_line(capsys, lambda: run(ckpt, photo, checkpoints))
    assert line.startswith(f"error: --output {checkpoints / 'a_tiles.npz'}: a checkpoint's name, or one of a run's")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png"]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]


def test_a_photo_with_no_tile_to_judge_gets_no_camera_and_strict_json(ckpt, tmp_path, capsys):
    """A flat photo's score is -inf: JSON has no such number (nor NaN), so the file says null."""
    photo = write_image(tmp_path / "flat.png", np.full((64, 80, 3), 128, np.uint8))
    summary = run(ckpt, photo, tmp_path / "out")
    assert summary["flat_tiles"] == summary["tiles"] and summary["own_camera"] is None
    text = (tmp_path / "out" / "flat.json").read_text()
    written = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert written["photo_score"] is None and written["own_camera"] is None
    assert "every tile too flat or clipped to judge" in capsys.readouterr().out


def test_a_threshold_that_is_not_a_number_is_refused(ckpt, tmp_path, capsys):
    photo = write_image(tmp_path / "photo.png", random_image(np.random.default_rng(0), 64, 64))
    with pytest.raises(SystemExit) as stopped:
        run(ckpt, photo, tmp_path / "out", "--threshold", "nan")
    assert stopped.value.code == 2 and "--threshold: must be a finite number, not nan" in capsys.readouterr().err


@pytest.mark.parametrize(
    "summary",
    ['{"input": "a.png", "checkpoint": "m", "method": "x", "tile_size": 64, "input_path": ["a.png"]}', "[" * 200_000],
    ids=["a_list_for_the_photo", "nested_too_deeply"],
)
def test_a_summary_inspect_did_not_write_is_refused_and_its_files_kept(ckpt, tmp_path, capsys, summary):
    """The first ended in a TypeError traceback, the second in a RecursionError one."""
    folder = tmp_path / "inspected"
    photo = write_image(tmp_path / "photos" / "a.png", random_image(np.random.default_rng(0), 64, 64))
    users = write_image(folder / "a_map.png", random_image(np.random.default_rng(1), 64, 64))
    (folder / "a.json").write_text(summary)
    line = one_error_line(capsys, lambda: run(ckpt, photo, folder))
    assert line.endswith(f"{users} is there and is not an earlier camlit inspect output (not an inspect "
                         "summary); name another folder or move it")  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "a_map.png"]
    assert (folder / "a.json").read_text() == summary


def test_a_file_inspect_did_not_write_is_refused_and_kept_and_its_own_are_replaced(ckpt, tmp_path, capsys):
    folder = tmp_path / "inspected"
    photo = write_image(tmp_path / "photos" / "a.png", random_image(np.random.default_rng(0), 64, 64))
    users = write_image(folder / "a_map.png", random_image(np.random.default_rng(1), 64, 64))
    before = users.read_bytes()
    line = one_error_line(capsys, lambda: run(ckpt, photo, folder))
    assert f"--output: {users} is there and is not an earlier camlit inspect output (no inspect summary a.json" in line
    assert users.read_bytes() == before and not (folder / "a_tiles.npz").exists()
    # The user's own a.json: named for what it is (the message pointed at itself as the missing summary).
    (folder / "a_map.png").unlink()
    (folder / "a.json").write_text("{}")
    line = one_error_line(capsys, lambda: run(ckpt, photo, folder))
    assert line.endswith(f"{folder / 'a.json'} is there and is not an earlier camlit inspect output (not an inspect "
                         "summary); name another folder or move it")  # fmt: skip
    # Its own outputs, from an earlier run, are replaced.
    run(ckpt, photo, tmp_path / "out")
    assert run(ckpt, photo, tmp_path / "out")["tiles"] == 9


def test_another_photo_of_the_same_stem_does_not_replace_the_first_ones_outputs(ckpt, tmp_path, capsys, monkeypatch):
    """A loop over `find` output lost results: sub/a.png replaced a.jpg's four files without a word."""
    first = write_image(tmp_path / "a.jpg", random_image(np.random.default_rng(0), 64, 64))
    second = write_image(tmp_path / "sub" / "a.png", random_image(np.random.default_rng(1), 64, 64))
    out = tmp_path / "out"
    run(ckpt, first, out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    line = one_error_line(capsys, lambda: run(ckpt, second, out))
    assert f"{out / 'a.json'} holds the outputs of another photo of that stem, {first.resolve()}" in line
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    # The same photo, named from another folder, replaces its own.
    monkeypatch.chdir(tmp_path)
    assert run(ckpt, Path("a.jpg"), out)["input"] == "a.jpg"


@pytest.fixture
def disk_for_one_small_photo(tmp_path):
    """A real 600 KiB file system: a small photo's four outputs fit, a larger photo's do not."""
    with small_tmpfs(tmp_path / "disk", "600k") as folder:
        yield folder


def test_a_full_disk_leaves_the_earlier_outputs_as_they_were(ckpt, tmp_path, disk_for_one_small_photo, capsys):
    disk = disk_for_one_small_photo
    run(ckpt, write_image(tmp_path / "x.png", random_image(np.random.default_rng(0), 64, 64)), disk)
    before = {path.name: path.read_bytes() for path in disk.iterdir()}
    write_image(tmp_path / "x.png", random_image(np.random.default_rng(1), 400, 300))
    line = one_error_line(capsys, lambda: run(ckpt, tmp_path / "x.png", disk))
    assert "no space left" in line and "written all together or not at all" in line
    assert {path.name: path.read_bytes() for path in disk.iterdir()} == before
    # A folder inspect made for its outputs goes with them: the line says nothing was written.
    line = one_error_line(capsys, lambda: run(ckpt, tmp_path / "x.png", disk / "new" / "out"))
    assert "no space left" in line and not (disk / "new").exists()


def test_a_folder_named_like_an_output_is_refused_and_the_earlier_outputs_stay(ckpt, tmp_path, capsys):
    """It failed with a traceback after two of the four files had been replaced."""
    photo = write_image(tmp_path / "o.png", random_image(np.random.default_rng(0), 64, 64))
    run(ckpt, photo, tmp_path / "out")
    (tmp_path / "out" / "o_map.png").unlink()
    (tmp_path / "out" / "o_map.png").mkdir()
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()}
    line = one_error_line(capsys, lambda: run(ckpt, photo, tmp_path / "out", "--method", "disagreement"))
    assert "o_map.png is a folder where inspect writes a file" in line
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()} == before
