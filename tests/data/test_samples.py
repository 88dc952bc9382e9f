import numpy as np
import pytest
from conftest import CLASSES, random_image, write_image

from camlit.data.samples import check_images, scan, split_by_photo
from camlit.errors import CamlitError
from camlit.imageio import ImageTooSmall, UnreadableImage, read_rgb


def test_flat_layout_labels_follow_class_list_not_folder_order(flat_tree):
    reordered = [CLASSES[2], CLASSES[0], CLASSES[1], "Sony-NEX-7"]
    samples = scan(flat_tree, reordered)
    assert len(samples) == 18
    for sample in samples:
        assert reordered[sample.label] in sample.path
        assert sample.manipulation == "unaltered"


def test_manipulation_layout_keeps_manipulation_and_photo(manipulation_tree):
    samples = scan(manipulation_tree, CLASSES)
    assert len(samples) == 3 * 3 * 4
    assert {s.manipulation for s in samples} == {"unaltered", "jpeg70", "gamma0.8"}
    assert len({s.photo for s in samples}) == 12


def test_extensions_any_case_and_other_files_ignored(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.JPG", "b.jpeg", "c.PNG", "d.tif", "e.TIFF", "f.bmp"):
        write_image(tmp_path / "HTC-1-M7" / name, random_image(rng))
    (tmp_path / "HTC-1-M7" / "notes.txt").write_text("hello")
    (tmp_path / "HTC-1-M7" / "g.gif").write_bytes(b"GIF89a")
    names = sorted(s.path.rsplit("/", 1)[1] for s in scan(tmp_path, CLASSES))
    assert names == ["a.JPG", "b.jpeg", "c.PNG", "d.tif", "e.TIFF", "f.bmp"]


def test_bad_roots(tmp_path):
    with pytest.raises(CamlitError, match="no such folder"):
        scan(tmp_path / "absent", CLASSES)
    with pytest.raises(CamlitError, match="no class or manipulation folders"):
        scan(tmp_path, CLASSES)
    (tmp_path / "HTC-1-M7").mkdir()
    with pytest.raises(CamlitError, match="no images"):
        scan(tmp_path, CLASSES)
    other = tmp_path / "other"
    write_image(other / "unaltered" / "Nokia-3310" / "x.png", random_image(np.random.default_rng(0)))
    with pytest.raises(CamlitError, match="camera folder\\(s\\) Nokia-3310 not in the class list"):
        scan(other, CLASSES)


@pytest.mark.parametrize("folder", ["train", "jpeg75", "Unaltered"])
def test_a_manipulation_folder_camlit_does_not_know_is_refused(tmp_path, folder):
    """A Kaggle download's folder (`download/train/<camera>/`) trained as manipulated photos of no
    known kind, --data.manipulation_p doing nothing; a misspelt manipulation did the same."""
    rng = np.random.default_rng(0)
    for camera in CLASSES:
        write_image(tmp_path / "root" / folder / camera / "p0.png", random_image(rng))
        write_image(tmp_path / "root" / "unaltered" / camera / "p1.png", random_image(rng))
    with pytest.raises(CamlitError, match=rf"manipulation folder\(s\) {folder} not among camlit's \(unaltered, jpeg70"):
        scan(tmp_path / "root", CLASSES)


def test_split_grouped_by_photo_and_stratified(manipulation_tree):
    samples = scan(manipulation_tree, CLASSES)
    train, val = split_by_photo(samples, 0.25, seed=3)
    assert {s.photo for s in train}.isdisjoint({s.photo for s in val})
    assert len(train) + len(val) == len(samples)
    for label in range(3):  # 4 photos per class, 25% -> exactly one photo (3 manipulations) in val
        assert sum(s.label == label for s in val) == 3
    assert split_by_photo(samples, 0.25, seed=3) == (train, val)
    assert split_by_photo(samples, 0.25, seed=4) != (train, val)


def test_tiles_of_one_photo_stay_together(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(10):
        for t in range(3):
            write_image(tmp_path / "HTC-1-M7" / f"photo{k}_t{t}.png", random_image(rng))
    train, val = split_by_photo(scan(tmp_path, CLASSES), 0.3, seed=0)
    assert {s.photo for s in train}.isdisjoint({s.photo for s in val})
    assert len(val) == 9


def test_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "HTC-1-M7"
    good = write_image(folder / "good.png", random_image(rng, 128, 128))
    write_image(folder / "small.png", random_image(rng, 100, 100))
    write_image(folder / "gray.png", rng.integers(0, 256, (128, 128), dtype=np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG")
    jpeg = write_image(folder / "full.jpg", random_image(rng, 128, 128)).read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "corrupt.jpg").write_bytes(jpeg[:200] + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    usable, problems = check_images(scan(tmp_path, CLASSES), min_size=112)
    usable_names = {s.path.rsplit("/", 1)[1] for s in usable}
    assert {"good.png", "full.jpg"} <= usable_names
    messages = [str(p) for p in problems]
    text = "\n".join(messages)
    for name, reason in [
        ("small.png", "smaller than"),
        ("gray.png", "grayscale"),
        ("empty.jpg", "empty"),
        ("text.jpg", "not a decodable"),
        ("truncated.jpg", "truncated"),
    ]:
        assert any(name in m and reason in m for m in messages), (name, text)
    # Only the readable image that is too small is ImageTooSmall; the others are just unreadable.
    assert [m for p, m in zip(problems, messages, strict=True) if isinstance(p, ImageTooSmall)] == [
        m for m in messages if "small.png" in m
    ]
    assert "good.png" not in text
    assert read_rgb(good).shape == (128, 128, 3)


def test_alpha_and_16_bit_are_converted(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert np.array_equal(read_rgb(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGB))
    deep = rng.integers(0, 65536, (40, 40, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert np.array_equal(read_rgb(tmp_path / "deep.png"), (deep >> 8).astype(np.uint8)[..., ::-1])
    with pytest.raises(UnreadableImage, match="absent.png"):
        read_rgb(tmp_path / "absent.png")
