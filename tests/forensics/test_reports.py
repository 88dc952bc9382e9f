import json
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import add_unusable_files, one_error_line, random_image, write_image

from camlit.forensics.reports import pixel_f1_mcc, splice_report
from camlit.forensics.splice import SpliceResult
from camlit.inference import openset
from camlit.inference.evaluate import main as evaluate
from camlit.inference.evaluate_report import format_forensics


def result(mask: np.ndarray, score: float) -> SpliceResult:
    return SpliceResult("disagreement", np.zeros((1, 1)), score, 0, 1, bool(mask.any()), mask)


def test_pixel_f1_and_mcc():
    truth = np.zeros((10, 10), bool)
    truth[:5] = True
    assert pixel_f1_mcc(truth, truth) == (1.0, 1.0)
    half = np.zeros_like(truth)
    half[:5, :5] = True  # 25 of 50 found, nothing false: precision 1, recall 1/2
    f1, mcc = pixel_f1_mcc(half, truth)
    assert np.isclose(f1, 2 / 3) and np.isclose(mcc, 25 * 50 / np.sqrt(25 * 50 * 50 * 75))


def test_splice_report_counts_clean_photos_given_a_foreign_region():
    truth, clean = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    truth[:5] = True
    small, large = clean.copy(), clean.copy()
    small[0, :5] = True  # 5% of the photo: not a false alarm
    large[:2] = True  # 20%: a false alarm
    results = [result(truth, 3.0), result(small, 1.0), result(large, 2.0), result(clean, 0.0)]
    report = splice_report(["a", "a", "a", "a"], [truth, clean, clean, clean], results)["all"]
    assert report["pixel_f1"] == 1.0 and report["photo_auroc"] == 1.0
    assert np.isclose(report["clean_with_foreign_region"], 1 / 3)


def test_a_set_of_clean_photos_only_prints_no_auroc_rather_than_nan():
    clean = np.zeros((10, 10), bool)
    report = splice_report(["a", "a"], [clean, clean], [result(clean, 1.0), result(clean, 0.0)])
    lines = format_forensics({"splices": {"groups": report}})
    assert lines[0] == "splices, a: pixel F1 -, MCC -, photo AUROC -, clean photos given a foreign region   0.00%"


def test_evaluate_reports_unknown_cameras_and_splices(ckpt, flat_tree, tmp_path):
    rng = np.random.default_rng(0)
    unknown = tmp_path / "unknown"
    for name in ("u1_unalt.png", "u2_manip.png"):
        write_image(unknown / name, random_image(rng, 64, 80))
    splices = tmp_path / "splices" / "unaltered"
    for name, region in (("spliced.png", np.s_[16:48, 16:48]), ("clean.png", np.s_[0:0])):
        write_image(splices / name, random_image(rng, 64, 64))
        mask = np.zeros((64, 64), np.uint8)
        mask[region] = 255
        (splices / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(splices / "masks" / name), mask)
    checkpoint = tmp_path / "model" / "model.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(ckpt.read_bytes())
    openset.OpenSetModel("msp", 0.5, 3).save(openset.calibration_path(checkpoint))
    report = evaluate([
        "--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--crops", "3",
        "--num_workers", "0", "--no_progress",
        "--unknown_input", str(unknown), "--splices", str(tmp_path / "splices"),
        "--confusion", str(tmp_path / "confusion.png"),
    ])  # fmt: skip
    figures = report["unknown_cameras"]
    assert figures["score"] == "msp" and figures["unaltered"]["known"] == 18 and figures["unaltered"]["unknown"] == 1
    assert 0 <= figures["unaltered"]["auroc"] <= 1 and figures["manipulated"]["unknown"] == 1
    groups = report["splices"]["groups"]
    assert (groups["unaltered"]["spliced"], groups["unaltered"]["clean"]) == (1, 1)
    assert report["splices"]["method"] == "lattice_then_disagreement"
    assert report["splices"]["photo_threshold"] == {"lattice": 0.1, "lattice_after_gamma": 0.45, "disagreement": 7.96}
    report = evaluate([
        "--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--crops", "1", "--num_workers", "0",
        "--no_progress", "--splices", str(tmp_path / "splices"), "--splice_method", "disagreement_smoothed",
        "--confusion", str(tmp_path / "confusion.png"),
    ])  # fmt: skip
    assert report["splices"]["method"] == "disagreement_smoothed"
    assert report["splices"]["photo_threshold"] == 4.88  # no calibration beside it: the measured one


def test_an_unknown_splice_method_is_refused_before_any_work(ckpt, flat_tree, tmp_path, capsys):
    args = ["--ckpt_path", str(ckpt), "--input", str(flat_tree), "--splice_method", "nearest"]
    assert "--splice_method: only with --splices" in one_error_line(capsys, lambda: evaluate(args))
    args += ["--splices", str(tmp_path)]
    assert "--splice_method: unknown 'nearest'" in one_error_line(capsys, lambda: evaluate(args))


def test_evaluate_refuses_other_crops_than_the_calibration_naming_unknown_input(ckpt, flat_tree, tmp_path, capsys):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(ckpt.read_bytes())
    openset.OpenSetModel("msp", 0.5, 3).save(openset.calibration_path(checkpoint))
    unknown = shutil.copytree(sorted(flat_tree.iterdir())[0], tmp_path / "unknown")
    args = ["--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--unknown_input", str(unknown), "--crops", "2"]
    line = one_error_line(capsys, lambda: evaluate(args))
    assert line.startswith("error: --unknown_input:") and "3 random crops" in line


def test_evaluate_refuses_the_known_folder_as_unknown_input(ckpt, flat_tree, tmp_path, capsys):
    """The known photos scored as unknown ones, and the report gave their AUROC against themselves."""
    checkpoint = calibrated_copy(ckpt, tmp_path)
    args = ["--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--unknown_input", f"{flat_tree}/."]
    line = one_error_line(capsys, lambda: evaluate(args))
    assert line.startswith(f"error: --unknown_input {flat_tree}/.: the folder of --input")
    # A camera folder under it too: without --labels every folder there is a known camera's.
    camera = sorted(flat_tree.iterdir())[0]
    args[args.index("--unknown_input") + 1] = str(camera)
    line = one_error_line(capsys, lambda: evaluate(args))
    assert line.startswith(f"error: --unknown_input {camera}: inside --input {flat_tree}, whose folders are known")


def calibrated_copy(ckpt, tmp_path):
    checkpoint = tmp_path / "model" / "model.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(ckpt.read_bytes())
    openset.OpenSetModel("msp", 0.5, 3).save(openset.calibration_path(checkpoint))
    return checkpoint


def test_unusable_unknown_photos_are_reported_as_known_ones_are(ckpt, flat_tree, tmp_path, capsys):
    """They vanished from the figures without a word; and a group with no unknown photo has an AUROC
    of NaN, which the JSON file says as null (NaN is not JSON)."""
    unknown = tmp_path / "unknown"
    write_image(unknown / "u1_unalt.png", random_image(np.random.default_rng(0), 64, 80))
    add_unusable_files(unknown)
    checkpoint = calibrated_copy(ckpt, tmp_path)
    args = ["--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--crops", "3", "--num_workers", "0",
            "--no_progress", "--unknown_input", str(unknown), "--json", str(tmp_path / "r.json")]  # fmt: skip
    line = one_error_line(capsys, lambda: evaluate(args))
    assert "4 unusable image(s)" in line and "--skip_unreadable" in line and not (tmp_path / "r.json").exists()
    report = evaluate([*args, "--skip_unreadable"])
    assert report["unknown_cameras"]["skipped"] == ["gray.png", "text.jpg", "tiny.png", "zero.jpg"]
    assert report["unknown_cameras"]["unaltered"]["unknown"] == 1
    written = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert written["unknown_cameras"]["manipulated"]["auroc"] is None


def test_missing_forensic_folders_are_refused_before_any_work(ckpt, flat_tree, tmp_path, capsys, monkeypatch):
    import camlit.inference.options as options

    monkeypatch.setattr(options, "predict_with", lambda *args, **kwargs: pytest.fail("predicted before the check"))
    checkpoint = calibrated_copy(ckpt, tmp_path)
    for option in ("--unknown_input", "--splices"):
        args = ["--ckpt_path", str(checkpoint), "--input", str(flat_tree), option, str(tmp_path / "none")]
        line = one_error_line(capsys, lambda args=args: evaluate(args))
        assert f"error: {option} {tmp_path / 'none'}: no such folder" in line
    (tmp_path / "empty").mkdir()
    args = ["--ckpt_path", str(checkpoint), "--input", str(flat_tree), "--unknown_input", str(tmp_path / "empty")]
    line = one_error_line(capsys, lambda: evaluate(args))
    assert f"error: --unknown_input {tmp_path / 'empty'}: no images in it" in line


def test_a_splice_photo_without_its_mask_is_refused_before_any_work(ckpt, flat_tree, tmp_path, capsys, monkeypatch):
    import camlit.inference.options as options

    monkeypatch.setattr(options, "predict_with", lambda *args, **kwargs: pytest.fail("predicted before the check"))
    group = tmp_path / "splices" / "unaltered"
    for name in ("a.png", "b.png"):
        write_image(group / name, random_image(np.random.default_rng(0), 64, 64))
    write_image(group / "masks" / "a.png", np.zeros((64, 64, 3), np.uint8))
    args = ["--ckpt_path", str(ckpt), "--input", str(flat_tree), "--splices", str(tmp_path / "splices")]
    line = one_error_line(capsys, lambda: evaluate(args))
    assert line == f"error: --splices: 1 photo(s) without a mask, the first {group / 'masks' / 'b.png'}"
    # A group folder without masks/ at all left the report, and the figure of all groups, unsaid.
    write_image(group / "masks" / "b.png", np.zeros((64, 64, 3), np.uint8))
    other = tmp_path / "splices" / "jpeg90"
    write_image(other / "c.png", random_image(np.random.default_rng(1), 64, 64))
    (tmp_path / "splices" / "notes").mkdir()  # a folder of no photos is no group, and no mistake
    line = one_error_line(capsys, lambda: evaluate(args))
    assert line == f"error: --splices: {other} holds photos but no masks/ folder beside them"


def test_a_mask_whose_name_is_not_utf8_is_read_and_a_damaged_one_refused(tmp_path):
    """cv2.imread crashed the process (SIGSEGV) on such a name."""
    import os

    from camlit.forensics.reports import read_mask

    path = tmp_path / os.fsdecode(b"b\xffd.png")
    mask = np.zeros((8, 10, 3), np.uint8)
    mask[2:5, 3:7] = 255
    write_image(path, mask)
    found = read_mask(path, (8, 10))
    assert found.sum() == 12 and found[2:5, 3:7].all()
    path.write_bytes(b"not a png")
    with pytest.raises(Exception, match="unreadable or not the photo's size"):
        read_mask(path, (8, 10))


def test_a_mask_of_zeros_and_ones_marks_its_ones(tmp_path):
    """Written as (mask > 0).astype(uint8), a spliced photo's mask read as a clean one."""
    from camlit.forensics.reports import read_mask

    for high in (1, 255):
        mask = np.zeros((8, 10, 3), np.uint8)
        mask[2:5, 3:7] = high
        write_image(tmp_path / f"mask{high}.png", mask)
        found = read_mask(tmp_path / f"mask{high}.png", (8, 10))
        assert found.sum() == 12 and found[2:5, 3:7].all()


def with_exif_orientation(png: bytes, orientation: int) -> bytes:
    """A PNG with an eXIf chunk (a big-endian TIFF header, one Orientation entry) after its IHDR."""
    exif = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + bytes(4)
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    end_of_header = 8 + 8 + 13 + 4  # the signature, then IHDR's length, type, data and CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def test_a_mask_is_read_as_stored_whatever_its_exif_orientation(tmp_path):
    """OpenCV turned a mask tagged `rotate 90` against its photo (read as stored): a pixel F1 of
    0.945 fell to 0.001 without a word, and a square mask passed the size check."""
    from camlit.forensics.reports import read_mask

    mask = np.zeros((10, 10), np.uint8)
    mask[:, :3] = 255
    path = tmp_path / "mask.png"
    path.write_bytes(with_exif_orientation(cv2.imencode(".png", mask)[1].tobytes(), 6))
    assert np.array_equal(read_mask(path, (10, 10)), mask > 0)
