import gc
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES, add_unusable_files, epoch_batches, random_image, same_batch, write_image
from conftest import make_datamodule as make

import camlit.data.cache
import camlit.data.datamodule
from camlit.data.cache import DamagedCache, build_cache, open_cache
from camlit.data.datamodule import CameraDataModule
from camlit.data.samples import scan
from camlit.errors import CamlitError
from camlit.imageio import read_rgb


def paths_of(root):
    return [s.path for s in scan(root, CLASSES)]


@pytest.mark.parametrize("workers", [0, 2])
def test_cache_gives_the_same_crops_as_decoding(flat_tree, tmp_path, workers):
    options = dict(crops_per_image=2, manipulation_p=0.5, val_manipulations=["jpeg70", "resize0.5", "gamma0.8"])
    decoding = make(flat_tree, **options)
    cached = make(flat_tree, cache_dir=str(tmp_path / "cache"), num_workers=workers, **options)
    assert cached.cache is not None and decoding.cache is None
    for epoch in (0, 1):
        for one, other in zip(epoch_batches(decoding, epoch), epoch_batches(cached, epoch), strict=True):
            assert same_batch(one, other)
    assert len(decoding.val_set) == len(cached.val_set) > 0
    for index in range(len(decoding.val_set)):
        (a, *labels_a), (b, *labels_b) = decoding.val_set[index], cached.val_set[index]
        assert torch.equal(a, b) and labels_a == labels_b


def test_reader_gives_a_read_only_view_of_the_decoded_pixels(flat_tree, tmp_path):
    paths = paths_of(flat_tree)
    cache = build_cache(tmp_path / "cache", paths, 32)
    for path in paths:
        image = cache(path)
        assert np.array_equal(image, read_rgb(path)) and not image.flags.writeable
        # A crop shares the mapped memory: nothing beyond it is copied until the batch is stacked.
        assert np.shares_memory(image[2:10, 4:12], cache.data)


def test_a_data_file_zeroed_in_place_is_refused_at_the_first_read(flat_tree, tmp_path, monkeypatch):
    paths = paths_of(flat_tree)
    build_cache(tmp_path / "cache", paths, 32)
    [data_file] = (tmp_path / "cache").glob("images-*.u8")
    data_file.write_bytes(bytes(data_file.stat().st_size))  # same size: truncation checks cannot see it
    cache = open_cache(tmp_path / "cache", paths, 32)
    with pytest.raises(DamagedCache, match=f"{data_file}: damaged, the pixels of {paths[0]} do not match"):
        cache(paths[0])
    # Checked once per image and process: the cost is one pass over what is read.
    intact = build_cache(tmp_path / "rebuilt", paths, 32)
    checked, crc32 = [], zlib.crc32
    monkeypatch.setattr(camlit.data.cache.zlib, "crc32", lambda data: checked.append(1) or crc32(data))
    for _ in range(3):
        intact(paths[0])
    assert len(checked) == 1


def test_damage_found_in_a_loader_worker_is_one_line(flat_tree, tmp_path):
    datamodule = make(flat_tree, cache_dir=str(tmp_path / "cache"), num_workers=1)
    [data_file] = (tmp_path / "cache").glob("images-*.u8")
    with open(data_file, "r+b") as file:  # zeros over every image's first bytes, in place
        for offset, *_ in datamodule.cache.entries.values():
            file.seek(offset)
            file.write(bytes(64))
    with pytest.raises(CamlitError) as raised:
        next(iter(datamodule.train_dataloader()))
    message = str(raised.value)
    assert message.startswith(f"{data_file}: damaged") and "\n" not in message, message


def test_a_full_disk_during_the_build_names_the_cache_file(flat_tree, small_disk):
    datamodule = CameraDataModule(
        str(flat_tree), classes=CLASSES, crop_size=32, num_workers=0, synthetic_root=None, cache_dir=str(small_disk)
    )
    with pytest.raises(CamlitError) as raised:
        datamodule.setup("fit")  # 18 images of 15 KiB do not fit in 256 KiB
    message = str(raised.value)
    assert message.startswith(f"{small_disk}/images-") and ".u8: no space left on device; the cache in" in message
    assert "checkpoint" not in message
    assert not list(small_disk.glob("*.u8*")) and not list(small_disk.glob(".images-*"))


def test_an_unwritable_cache_dir_is_refused_at_once(flat_tree, read_only_folder):
    with pytest.raises(CamlitError, match=f"--data.cache_dir {read_only_folder}/cache: cannot write in"):
        CameraDataModule(str(flat_tree), cache_dir=str(read_only_folder / "cache"))


@pytest.mark.parametrize("name", ["index", "images", "lock"])
def test_a_folder_in_place_of_a_cache_file_is_refused_and_kept(flat_tree, tmp_path, name):
    paths = paths_of(flat_tree)
    build_cache(tmp_path / "cache", paths, 32)
    (own,) = [p for p in (tmp_path / "cache").iterdir() if name in p.name]
    own.unlink()
    own.mkdir()
    (own / "keep.txt").write_text("the user's")
    with pytest.raises(CamlitError, match=f"{own}: not a file"):
        build_cache(tmp_path / "cache", paths, 32)
    assert (own / "keep.txt").read_text() == "the user's"


def test_an_unchanged_cache_is_not_rebuilt(flat_tree, tmp_path, monkeypatch):
    paths = paths_of(flat_tree)
    build_cache(tmp_path / "cache", paths, 32)
    monkeypatch.setattr(camlit.data.cache, "decode_chunk", pytest.fail)
    # Neither the order nor a file listed twice (train_dir given as val_dir too) changes the key.
    assert build_cache(tmp_path / "cache", list(reversed(paths)) + paths, 32) is not None


def test_a_changed_source_file_rebuilds_the_cache(flat_tree, tmp_path):
    cache_dir = tmp_path / "cache"
    first = make(flat_tree, cache_dir=str(cache_dir))
    path = first.train_set.samples[0].path
    old_data = first.cache.data_path
    new_pixels = random_image(np.random.default_rng(7))
    write_image(Path(path), new_pixels)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert open_cache(cache_dir, paths_of(flat_tree), 32) is None
    second = make(flat_tree, cache_dir=str(cache_dir))
    assert np.array_equal(second.cache(path), new_pixels)
    # `first` still reads the old data file, so it stays until no process holds it.
    assert second.cache.data_path != old_data and old_data.exists()
    del first
    gc.collect()
    make(flat_tree, cache_dir=str(cache_dir))
    assert not old_data.exists() and not (cache_dir / old_data.name.replace("images", "index")).exists()
    # The crop size decides which images are too small, so it is part of the key as well.
    assert open_cache(cache_dir, paths_of(flat_tree), 16) is None


def test_an_interrupted_build_is_never_used(flat_tree, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    paths = paths_of(flat_tree)

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(camlit.data.cache, "write_index", die)
    with pytest.raises(KeyboardInterrupt):
        build_cache(cache_dir, paths, 32)
    monkeypatch.undo()
    # The data file is complete but has no index, as after a kill between the two renames.
    assert any(p.name.startswith("images-") for p in cache_dir.iterdir())
    assert open_cache(cache_dir, paths, 32) is None
    # A kill during the data write leaves only a temporary file.
    (cache_dir / ".images-0123456789abcdef.u8.tmp99").write_bytes(b"partial")
    cache = build_cache(cache_dir, paths, 32)
    assert np.array_equal(cache(paths[0]), read_rgb(paths[0]))
    assert sorted(p.name for p in cache_dir.iterdir() if ".tmp" in p.name) == []
    # A data file shorter than its index says (a torn copy of the folder) is refused, then rebuilt.
    with open(cache.data_path, "r+b") as data:
        data.truncate(100)
    assert open_cache(cache_dir, paths, 32) is None
    assert np.array_equal(build_cache(cache_dir, paths, 32)(paths[-1]), read_rgb(paths[-1]))


def test_unusable_files_reported_from_the_cache(flat_tree, tmp_path, caplog, monkeypatch):
    add_unusable_files(flat_tree / "HTC-1-M7")
    datamodule = CameraDataModule(
        str(flat_tree), classes=CLASSES, crop_size=32, num_workers=2, synthetic_root=None, cache_dir=str(tmp_path / "c")
    )
    datamodule.prepare_data()
    # setup must take the verdicts from the index instead of decoding every file again.
    monkeypatch.setattr(camlit.data.datamodule, "check_images", pytest.fail)
    with caplog.at_level(logging.WARNING):
        datamodule.setup("fit")
    for name in ("zero.jpg", "text.jpg", "tiny.png", "gray.png"):
        assert sum(name in r.getMessage() for r in caplog.records) == 1, name
    assert "smaller than the 32x32 crop" in caplog.text and "grayscale" in caplog.text
    assert "skipped 4 unusable image(s)" in caplog.text
    assert len(datamodule.train_set) + len({i[0] for i in datamodule.val_set.items}) == 18


def test_prepare_data_sets_no_state_and_setup_builds_the_cache(flat_tree, tmp_path):
    datamodule = CameraDataModule(
        str(flat_tree), classes=CLASSES, crop_size=32, num_workers=0, synthetic_root=None, cache_dir=str(tmp_path / "c")
    )
    before = dict(vars(datamodule))
    datamodule.prepare_data()
    assert vars(datamodule) == before and not list(tmp_path.rglob("images-*.u8"))
    datamodule.setup("fit")
    assert datamodule.cache is not None
    path = datamodule.train_set.samples[0].path
    assert np.array_equal(datamodule.cache(path), read_rgb(path))


def test_a_cache_of_an_earlier_format_is_not_reused(flat_tree, tmp_path, monkeypatch):
    """Format 3 held TIFFs turned by their Orientation tag, as OpenCV returned them; the reader
    now reads them as stored, and a cache kept from before gave training the turned pixels."""
    paths = paths_of(flat_tree)
    with monkeypatch.context() as old:
        old.setattr(camlit.data.cache, "FORMAT", 3)
        old.setattr(
            camlit.data.cache,
            "read_rgb",
            lambda path, limit: np.ascontiguousarray(read_rgb(path, limit).transpose(1, 0, 2)),
        )
        build_cache(tmp_path / "cache", paths, 32)
    cache = build_cache(tmp_path / "cache", paths, 32)
    assert all(np.array_equal(cache(path), read_rgb(path)) for path in paths)
